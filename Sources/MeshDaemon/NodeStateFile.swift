import Foundation
import MeshCore

/// What a node remembers across restarts, in `STATE/node.json` (written crash-safe):
/// its last incarnation (so a restart always announces a higher one) and the endpoints of
/// the peers it knew (so a restart can rejoin without `--peer`).
public struct NodeStateFile: Codable, Sendable, Equatable {
    public static let currentVersion = 1

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

    public enum LoadError: Error, CustomStringConvertible {
        case corrupt(path: String, reason: String)
        case otherMesh(path: String, found: String, expected: String)
        case newerVersion(path: String, Int)

        public var description: String {
            switch self {
            case .corrupt(let p, let r):
                return "\(p) is corrupt (\(r)); it was not changed. Move it aside to start this node's state afresh (it will rejoin through --peer or the token's bootstrap peers)"
            case .otherMesh(let p, let f, let e):
                return "\(p) belongs to mesh \(f), not \(e); use another --state directory for this mesh"
            case .newerVersion(let p, let v):
                return "\(p) was written by a newer meshwork (state version \(v)); upgrade meshwork"
            }
        }
    }

    /// The saved state, or nil if there is none yet. A file that exists but cannot be read
    /// is an error: it is reported, never silently replaced.
    public static func load(from path: String, meshId: String) throws -> NodeStateFile? {
        guard AtomicFile.exists(path) else { return nil }
        let bytes = try AtomicFile.read(path)
        let state: NodeStateFile
        do {
            state = try JSONDecoder().decode(NodeStateFile.self, from: Data(bytes))
        } catch {
            throw LoadError.corrupt(path: path, reason: "not valid node state JSON")
        }
        guard state.version <= currentVersion else { throw LoadError.newerVersion(path: path, state.version) }
        guard state.meshId == meshId else { throw LoadError.otherMesh(path: path, found: state.meshId, expected: meshId) }
        return state
    }

    public func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try AtomicFile.write(Array(try encoder.encode(self)) + [0x0a], to: path, mode: 0o600, overwrite: true)
    }
}
