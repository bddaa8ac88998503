import Foundation
import MeshCore
import MeshPool
import MeshWire

/// The pool state a node keeps in `STATE/pool.json`, crash-safe: the highest grant
/// sequence number it has used (never reused, or it could grant an address twice) and the
/// grants it knows (its own lease among them, so a restart keeps its address).
public struct PoolStateFile: Codable, Sendable {
    public static let currentVersion = 1
    public var version = PoolStateFile.currentVersion
    public var meshId: String
    public var seq: UInt64
    /// Each grant's wire encoding, hex.
    public var grants: [String]

    public init(meshId: String, seq: UInt64, grants: [Grant]) {
        self.meshId = meshId
        self.seq = seq
        self.grants = grants.map { Hex.encode($0.wireBytes) }.sorted()
    }

    public func decodedGrants() throws -> [Grant] {
        try grants.map { text in
            guard let bytes = Hex.decode(text) else { throw NodeStateFile.LoadError.corrupt(path: "pool.json", reason: "a grant is not hex") }
            do { return try Grant(wireBytes: bytes) } catch { throw NodeStateFile.LoadError.corrupt(path: "pool.json", reason: "a grant does not decode: \(error)") }
        }
    }

    public static func load(from path: String, meshId: String) throws -> PoolStateFile? {
        guard AtomicFile.exists(path) else { return nil }
        let bytes = try AtomicFile.read(path)
        let state: PoolStateFile
        do {
            state = try JSONDecoder().decode(PoolStateFile.self, from: Data(bytes))
        } catch {
            throw NodeStateFile.LoadError.corrupt(path: path, reason: "not valid pool state JSON")
        }
        guard state.version <= currentVersion else { throw NodeStateFile.LoadError.newerVersion(path: path, state.version) }
        guard state.meshId == meshId else { throw NodeStateFile.LoadError.otherMesh(path: path, found: state.meshId, expected: meshId) }
        do {
            _ = try state.decodedGrants()
        } catch let e as NodeStateFile.LoadError {
            if case .corrupt(_, let why) = e { throw NodeStateFile.LoadError.corrupt(path: path, reason: why) }
            throw e
        }
        return state
    }

    public func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try AtomicFile.write(Array(try encoder.encode(self)) + [0x0a], to: path, mode: 0o600, overwrite: true)
    }
}
