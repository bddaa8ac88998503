import MeshCore

/// Appends big-endian fields to a growing byte array. The mirror of `WireReader`.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func writeUInt8(_ v: UInt8) { bytes.append(v) }

    public mutating func writeUInt16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    public mutating func writeUInt32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    public mutating func writeUInt64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    public mutating func writeBool(_ v: Bool) { bytes.append(v ? 1 : 0) }

    public mutating func writeBytes<C: Collection>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }

    public mutating func writeBytes32(_ b: Bytes32) { b.withUnsafeBytes { bytes.append(contentsOf: $0) } }

    /// A length then the bytes. The caller keeps the value within the prefix's range and the
    /// field's limit (encoders validate their values when they are built, not here).
    public mutating func writeLengthPrefixed<C: Collection>(_ prefix: LengthPrefix, _ b: C) where C.Element == UInt8 {
        writeLength(prefix, b.count)
        bytes.append(contentsOf: b)
    }

    public mutating func writeString(_ prefix: LengthPrefix = .u8, _ s: String) {
        writeLengthPrefixed(prefix, Array(s.utf8))
    }

    public mutating func write<T: WireCodable>(_ value: T) { value.encode(to: &self) }

    public mutating func writeArray<T: WireCodable>(_ prefix: LengthPrefix, _ values: [T]) {
        writeLength(prefix, values.count)
        for v in values { v.encode(to: &self) }
    }

    mutating func writeLength(_ prefix: LengthPrefix, _ n: Int) {
        switch prefix {
        case .u8: writeUInt8(UInt8(clamping: n))
        case .u16: writeUInt16(UInt16(clamping: n))
        case .u32: writeUInt32(UInt32(clamping: n))
        }
    }
}

/// A value with one binary encoding. Decoding is strict and never traps.
public protocol WireCodable: Sendable {
    init(from reader: inout WireReader) throws(WireError)
    func encode(to writer: inout WireWriter)
}

extension WireCodable {
    /// The encoding as a fresh byte array.
    public var wireBytes: [UInt8] {
        var w = WireWriter()
        encode(to: &w)
        return w.bytes
    }

    /// Decodes exactly one value that fills `bytes` (trailing bytes are an error).
    public init(wireBytes bytes: [UInt8]) throws(WireError) {
        var r = WireReader(bytes)
        self = try r.read(Self.self)
        try r.expectEnd()
    }
}

extension WireWriter {
    /// An unsigned LEB128 integer: 7 bits a byte, low first, the high bit set on every byte
    /// but the last (1 byte below 128, at most 10).
    public mutating func writeVarUInt(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
}
