import MeshCore

/// The text form of a node identity key, as stored in `identity.key` (Keys/README.md):
///
/// ```
/// -----BEGIN MESHWORK IDENTITY v1-----
/// node: <64 hex digits: the Ed25519 public key, i.e. the node ID>
/// seed: <43 characters: base64url of the 32-byte Ed25519 seed>
/// check: <8 hex digits: first 4 bytes of BLAKE2b("meshwork identity v1" ‖ seed ‖ node)>
/// -----END MESHWORK IDENTITY v1-----
/// ```
///
/// Lines starting with `#` and blank lines are ignored. The node line is redundant with the
/// seed on purpose: reading checks that they agree, which catches corruption the checksum
/// alone might not explain.
public enum IdentityKeyFile {
    public static let begin = "-----BEGIN MESHWORK IDENTITY v1-----"
    public static let end = "-----END MESHWORK IDENTITY v1-----"

    public enum FormatError: Error, Equatable, CustomStringConvertible {
        case notAKeyFile
        case unsupportedVersion(String)
        case missingField(String)
        case malformedField(String)
        case checksumMismatch
        case nodeMismatch

        public var description: String {
            switch self {
            case .notAKeyFile:
                return "not a Meshwork identity key (expected a '\(IdentityKeyFile.begin)' line); make one with 'meshwork keygen'"
            case .unsupportedVersion(let v):
                return "identity key format '\(v)' is not supported by this version of meshwork; upgrade meshwork"
            case .missingField(let f):
                return "the identity key is incomplete: its '\(f):' line is missing (the file may be truncated); restore it from a backup"
            case .malformedField(let f):
                return "the identity key is corrupt: its '\(f):' line is malformed; restore it from a backup"
            case .checksumMismatch:
                return "the identity key is corrupt: its checksum does not match; restore it from a backup"
            case .nodeMismatch:
                return "the identity key is corrupt: its node ID does not match its secret; restore it from a backup"
            }
        }
    }

    /// The file's text. It contains the secret seed: write it with mode 0600 only.
    public static func encode(_ identity: NodeIdentity) -> String {
        let node = identity.nodeID.hex
        let seed = identity.withSeed { Base64URL.encode($0) }
        let check = identity.withSeed { checksum(seed: $0, node: identity.nodeID) }
        return """
            # Meshwork node identity. SECRET: anyone with this file can act as this node.
            # Keep it mode 0600 and back it up; never share it. Node ID \(identity.nodeID.fingerprint).
            \(begin)
            node: \(node)
            seed: \(seed)
            check: \(check)
            \(end)

            """
    }

    /// Parses the file's bytes. The caller should zero its copy of `text` afterwards.
    public static func decode(_ text: [UInt8]) throws(FormatError) -> NodeIdentity {
        var fields: [String: [UInt8]] = [:]
        var sawBegin = false, sawEnd = false
        for rawLine in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            var line = Array(rawLine)
            while let last = line.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") {
                line.removeLast()
            }
            guard !line.isEmpty, line.first != UInt8(ascii: "#") else { continue }
            let s = String(decoding: line.prefix(64), as: UTF8.self)
            if s.hasPrefix("-----BEGIN MESHWORK IDENTITY") {
                guard String(decoding: line, as: UTF8.self) == begin else {
                    throw .unsupportedVersion(String(decoding: line, as: UTF8.self))
                }
                sawBegin = true
                continue
            }
            if s.hasPrefix("-----END MESHWORK IDENTITY") { sawEnd = true; continue }
            guard sawBegin, !sawEnd, let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                if !sawBegin { throw .notAKeyFile }
                continue
            }
            let key = String(decoding: line[..<colon], as: UTF8.self)
            var value = Array(line[(colon + 1)...])
            while value.first == UInt8(ascii: " ") { value.removeFirst() }
            fields[key] = value
        }
        guard sawBegin else { throw .notAKeyFile }
        guard let nodeText = fields["node"] else { throw .missingField("node") }
        guard var seedText = fields["seed"] else { throw .missingField("seed") }
        guard let checkText = fields["check"] else { throw .missingField("check") }
        defer { secureZero(&seedText) }
        guard sawEnd else { throw .missingField("end") }
        guard let node = NodeID(hex: String(decoding: nodeText, as: UTF8.self)) else { throw .malformedField("node") }
        guard var seed = Base64URL.decode(seedText), seed.count == NodeIdentity.seedBytes else {
            throw .malformedField("seed")
        }
        defer { secureZero(&seed) }
        let expected = seed.withUnsafeBytes { checksum(seed: $0, node: node) }
        guard String(decoding: checkText, as: UTF8.self).lowercased() == expected else { throw .checksumMismatch }
        let identity: NodeIdentity
        do {
            identity = try seed.withUnsafeBytes { try NodeIdentity(seed: $0) }
        } catch {
            throw .malformedField("seed")
        }
        guard identity.nodeID == node else { throw .nodeMismatch }
        return identity
    }

    static func checksum(seed: UnsafeRawBufferPointer, node: NodeID) -> String {
        var msg = Array("meshwork identity v1".utf8)
        msg.append(contentsOf: seed)
        msg.append(contentsOf: node.key.bytes)
        defer { secureZero(&msg) }
        return Hex.encode(Blake2b.hash(msg, outputLength: 16).prefix(4))
    }
}
