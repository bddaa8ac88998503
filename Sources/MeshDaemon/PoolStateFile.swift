import MeshCore
import MeshPool
import MeshWire

/// The pool state a node keeps in `STATE/pool.json`, crash-safe: the highest grant
/// sequence number it has used (never reused, or it could grant an address twice) and the
/// grants it knows (its own lease among them, so a restart keeps its address).
public struct PoolStateFile: StateFile {
    public static let currentVersion = 1
    public static let kind = "pool state"
    public static let prettyPrinted = false  // thousands of grants: compact
    public var version = PoolStateFile.currentVersion
    public var meshId: String
    public var seq: UInt64
    /// Each grant's wire encoding, hex.
    public var grants: [String]
    /// Reclaim votes given: holding grant ref (hex) → the successor voted for (node ID hex).
    /// A node never votes for two successors of one holding, across restarts too.
    public var votes: [String: String]?

    public init(meshId: String, seq: UInt64, grants: [Grant], votes: [Bytes32: NodeID] = [:]) {
        self.meshId = meshId
        self.seq = seq
        self.grants = grants.map { Hex.encode($0.wireBytes) }.sorted()
        self.votes = votes.isEmpty ? nil : Dictionary(uniqueKeysWithValues: votes.map { ($0.key.hex, $0.value.hex) })
    }

    public func decodedVotes(path: String = "pool.json") throws -> [Bytes32: NodeID] {
        var out: [Bytes32: NodeID] = [:]
        for (h, s) in votes ?? [:] {
            guard let hb = Hex.decode(h), let holding = Bytes32(hb), let successor = NodeID(hex: s) else {
                throw StateFileError.corrupt(path: path, reason: "a reclaim vote is not two 32-byte hex values")
            }
            out[holding] = successor
        }
        return out
    }

    public func decodedGrants(path: String = "pool.json") throws -> [Grant] {
        try grants.map { text in
            guard let bytes = Hex.decode(text) else { throw StateFileError.corrupt(path: path, reason: "a grant is not hex") }
            do { return try Grant(wireBytes: bytes) } catch { throw StateFileError.corrupt(path: path, reason: "a grant does not decode: \(error)") }
        }
    }

    public func validate(path: String) throws {
        _ = try decodedGrants(path: path)
        _ = try decodedVotes(path: path)
    }
}
