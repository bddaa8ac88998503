/// A node's identity: its Ed25519 public key.
///
/// Shown in full as 64 hex digits, and to people as a *fingerprint*: the first 16 hex
/// digits (64 bits). Users may name a node by any unambiguous prefix of its hex form.
public struct NodeID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let key: Bytes32

    public init(_ key: Bytes32) { self.key = key }

    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard let key = Bytes32(bytes) else { return nil }
        self.key = key
    }

    /// Parses the full 64-digit hex form.
    public init?(hex: some StringProtocol) {
        guard let raw = Hex.decode(hex), let key = Bytes32(raw) else { return nil }
        self.key = key
    }

    public static let fingerprintLength = 16

    public var hex: String { key.hex }
    public var fingerprint: String { String(hex.prefix(Self.fingerprintLength)) }
    public var description: String { fingerprint }

    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.key < rhs.key }

    /// The first 8 bytes as a big-endian integer: the key that anti-entropy digests (gossip
    /// and pool) are sorted and paged by.
    public var digestKey: UInt64 {
        key.withUnsafeBytes { raw in
            var v: UInt64 = 0
            for i in 0..<8 { v = v << 8 | UInt64(raw[i]) }
            return v
        }
    }
}
