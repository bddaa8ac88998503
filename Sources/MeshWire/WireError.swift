/// Why bytes from the network (or a token) could not be decoded. Every decoding failure
/// is one of these; none traps. `field` names what was being read, for logs and tests.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes remain than the field needs.
    case truncated(field: String, needed: Int, available: Int)
    /// A length field exceeds what this field may ever hold (checked before allocating).
    case lengthExceedsLimit(field: String, length: Int, limit: Int)
    /// The bytes are there but mean nothing valid.
    case invalidValue(field: String, reason: String)
    /// The packet's version is not one this build speaks.
    case unsupportedVersion(UInt8)
    /// The packet's type byte names no message this build knows.
    case unknownType(UInt8)
    /// A whole message decoded with bytes left over.
    case trailingBytes(count: Int)

    public var description: String {
        switch self {
        case .truncated(let f, let n, let a): return "truncated \(f): needs \(n) bytes, \(a) remain"
        case .lengthExceedsLimit(let f, let l, let m): return "\(f) length \(l) exceeds the limit of \(m)"
        case .invalidValue(let f, let r): return "invalid \(f): \(r)"
        case .unsupportedVersion(let v): return "unsupported wire version \(v)"
        case .unknownType(let t): return "unknown message type 0x\(String(t, radix: 16))"
        case .trailingBytes(let c): return "\(c) unexpected bytes after the message"
        }
    }
}
