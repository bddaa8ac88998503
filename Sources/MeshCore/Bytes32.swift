/// Thirty-two bytes held inline (no heap), compared and hashed as four words.
///
/// Public keys and node IDs are 32 bytes; keeping them inline makes them cheap to copy,
/// hash and compare, and keeps them off the heap on paths that handle many of them.
public struct Bytes32: Hashable, Sendable, Comparable {
    @usableFromInline var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public static let zero = Bytes32(w0: 0, w1: 0, w2: 0, w3: 0)

    @usableFromInline init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// Exactly 32 bytes, or nil.
    public init?<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard bytes.count == 32 else { return nil }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { raw in
            raw.copyBytes(from: bytes)
        }
        self.init(w0: words.0, w1: words.1, w2: words.2, w3: words.3)
    }

    /// Reads 32 bytes from raw memory of at least that size.
    public init(unsafeRaw raw: UnsafeRawBufferPointer) {
        precondition(raw.count >= 32, "Bytes32 needs 32 bytes")
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<32])) }
        self.init(w0: words.0, w1: words.1, w2: words.2, w3: words.3)
    }

    public var bytes: [UInt8] {
        withUnsafeBytes { Array($0) }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var words = (w0, w1, w2, w3)
        return try Swift.withUnsafeBytes(of: &words) { try body($0) }
    }

    /// Lexicographic order of the bytes (a stable order for tie-breaks on the wire).
    public static func < (lhs: Bytes32, rhs: Bytes32) -> Bool {
        // Words hold bytes in memory order; byte-swapping (on little-endian hosts) makes
        // integer order equal byte order.
        if lhs.w0 != rhs.w0 { return lhs.w0.bigEndian < rhs.w0.bigEndian }
        if lhs.w1 != rhs.w1 { return lhs.w1.bigEndian < rhs.w1.bigEndian }
        if lhs.w2 != rhs.w2 { return lhs.w2.bigEndian < rhs.w2.bigEndian }
        return lhs.w3.bigEndian < rhs.w3.bigEndian
    }

    public var hex: String { Hex.encode(bytes) }

    /// Hashes the first 16 bytes: keys and node IDs are uniformly random, and member tables
    /// look them up on every packet.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(w0)
        hasher.combine(w1)
    }
}
