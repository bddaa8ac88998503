import Foundation

/// A JSON file of node state in the state directory: versioned, tied to one mesh, written
/// crash-safe with mode 0600, and never silently replaced when it cannot be read.
public protocol StateFile: Codable, Sendable {
    static var currentVersion: Int { get }
    /// What the file holds, for error messages ("node state", "pool state").
    static var kind: String { get }
    /// Indented output, for files small enough that people read them.
    static var prettyPrinted: Bool { get }
    var version: Int { get }
    var meshId: String { get }
    /// Checks beyond the JSON shape; throws `StateFileError`.
    func validate(path: String) throws
}

public enum StateFileError: Error, CustomStringConvertible {
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

/// The largest state file read: pool.json keeps every grant (about 360 bytes each, two
/// per join), so a long-lived mesh outgrows the 1 MiB that bounds keys and tokens.
public let stateFileLimit = 256 << 20

extension StateFile {
    public func validate(path: String) throws {}

    /// The saved state, or nil if there is none yet. A file that exists but cannot be read
    /// is an error: it is reported, never silently replaced.
    public static func load(from path: String, meshId: String) throws -> Self? {
        guard AtomicFile.exists(path) else { return nil }
        let bytes = try AtomicFile.read(path, limit: stateFileLimit)
        let state: Self
        do {
            state = try JSONDecoder().decode(Self.self, from: Data(bytes))
        } catch {
            throw StateFileError.corrupt(path: path, reason: "not valid \(kind) JSON")
        }
        guard state.version <= currentVersion else { throw StateFileError.newerVersion(path: path, state.version) }
        guard state.meshId == meshId else { throw StateFileError.otherMesh(path: path, found: state.meshId, expected: meshId) }
        try state.validate(path: path)
        return state
    }

    public func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = Self.prettyPrinted ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        try AtomicFile.write(Array(try encoder.encode(self)) + [0x0a], to: path, mode: 0o600, overwrite: true)
    }
}
