import MeshCore

/// What a node remembers across restarts, in `STATE/node.json` (written crash-safe):
/// its last incarnation (so a restart always announces a higher one) and the endpoints of
/// the peers it knew (so a restart can rejoin without `--peer`).
public struct NodeStateFile: StateFile, Equatable {
    public static let currentVersion = 1
    public static let kind = "node state"
    public static let prettyPrinted = true

    public struct Peer: Codable, Sendable, Equatable {
        public var nodeId: String
        public var name: String
        public var endpoints: [String]
    }

    public var version = NodeStateFile.currentVersion
    public var meshId: String
    public var incarnation: UInt64
    public var peers: [Peer]

    public init(meshId: String, incarnation: UInt64, peers: [Peer]) {
        self.meshId = meshId
        self.incarnation = incarnation
        self.peers = peers
    }
}
