import MeshCore
import MeshCrypto
#if canImport(Glibc)
import Glibc
#endif

/// Loading and saving the node identity key, and reading mesh tokens from files.
public enum KeyStore {
    public enum LoadError: Error, CustomStringConvertible {
        case file(FileError)
        case format(path: String, IdentityKeyFile.FormatError)
        case token(source: String, MeshToken.TokenError)
        case neitherTokenNorFile(String)

        public var description: String {
            switch self {
            case .file(let e): return e.description
            case .format(let p, let e): return "\(p): \(e.description)"
            case .token(let s, let e): return s.isEmpty ? e.description : "\(s): \(e.description)"
            case .neitherTokenNorFile(let s):
                return "'\(s)' is neither a file nor a mesh token (a token starts with '\(MeshToken.prefix)'); check the path, or make a token with 'meshwork mesh create'"
            }
        }
    }

    /// Reads an identity key, refusing one that others can read.
    public static func loadIdentity(at path: String) throws(LoadError) -> NodeIdentity {
        var bytes: [UInt8]
        do { bytes = try AtomicFile.read(path, secret: true) } catch { throw .file(error) }
        defer { secureZero(&bytes) }
        do { return try IdentityKeyFile.decode(bytes) } catch { throw .format(path: path, error) }
    }

    /// Writes an identity key with mode 0600, crash-safe; refuses to replace an existing
    /// file unless `overwrite`.
    public static func saveIdentity(_ identity: NodeIdentity, at path: String, overwrite: Bool) throws(FileError) {
        var bytes = Array(IdentityKeyFile.encode(identity).utf8)
        defer { secureZero(&bytes) }
        try AtomicFile.makeDirectory(AtomicFile.directory(of: path))
        try AtomicFile.write(bytes, to: path, mode: 0o600, overwrite: overwrite)
    }

    /// The identity at `path`, made (and saved) first if there is no file there.
    /// Returns whether it was created.
    public static func loadOrCreateIdentity(at path: String) throws(LoadError) -> (NodeIdentity, created: Bool) {
        if AtomicFile.exists(path) { return (try loadIdentity(at: path), false) }
        var rng = SodiumRandom()
        let identity = NodeIdentity.generate(using: &rng)
        do { try saveIdentity(identity, at: path, overwrite: false) } catch { throw .file(error) }
        return (identity, true)
    }

    /// A mesh token given either as the token text itself or as the path of a file that
    /// holds it.
    public static func loadToken(_ tokenOrPath: String) throws(LoadError) -> MeshToken {
        let trimmed = tokenOrPath.trimmingWhitespace()
        if trimmed.hasPrefix("mwmesh") {
            do { return try MeshToken(parsing: trimmed) } catch { throw .token(source: "", error) }
        }
        var bytes: [UInt8]
        do {
            bytes = try AtomicFile.read(tokenOrPath)
        } catch {
            if case .notFound = error {
                throw .neitherTokenNorFile(tokenOrPath)
            }
            throw .file(error)
        }
        defer { secureZero(&bytes) }
        // A token file holds the token on one line; blank lines and '#' comments are allowed.
        let lines = bytes.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self).trimmingWhitespace() }
        let content = lines.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard content.count == 1 else {
            throw .token(source: tokenOrPath, content.isEmpty ? .notAToken : .malformed("the file holds \(content.count) lines, not one token"))
        }
        do { return try MeshToken(parsing: content[0]) } catch { throw .token(source: tokenOrPath, error) }
    }

    /// Whether group or others may read the file at `path`.
    public static func isReadableByOthers(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & 0o077 != 0
    }
}
