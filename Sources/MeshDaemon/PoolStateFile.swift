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
    /// The checkpoint the view is built on (its wire encoding, hex), if any: `grants` are
    /// then those made after its cut (docs/pool.md, "History compaction").
    public var checkpoint: String?

    public init(meshId: String, seq: UInt64, grants: [Grant], votes: [Bytes32: NodeID] = [:], checkpoint: PoolCheckpoint? = nil) {
        self.meshId = meshId
        self.seq = seq
        self.grants = grants.map { Hex.encode($0.wireBytes) }.sorted()
        self.votes = votes.isEmpty ? nil : Dictionary(uniqueKeysWithValues: votes.map { ($0.key.hex, $0.value.hex) })
        self.checkpoint = checkpoint.map { Hex.encode($0.wireBytes) }
    }

    public func decodedCheckpoint(path: String = "pool.json") throws -> PoolCheckpoint? {
        guard let checkpoint else { return nil }
        guard let bytes = Hex.decode(checkpoint) else { throw StateFileError.corrupt(path: path, reason: "the checkpoint is not hex") }
        do { return try PoolCheckpoint(wireBytes: bytes) } catch {
            throw StateFileError.corrupt(path: path, reason: "the checkpoint does not decode: \(error)")
        }
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
        _ = try decodedCheckpoint(path: path)
    }
}

/// What the daemon has made durable of its pool state (kept beside the running node, and
/// written as `pool.json` and `pool.log`).
struct PoolSaved: Sendable {
    var grants: [Bytes32: Grant] = [:]
    var seq: UInt64 = 0
    var votes: [Bytes32: NodeID] = [:]
    var base: PoolCheckpoint?
}
