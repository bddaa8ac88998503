import MeshCore

/// Reads big-endian fields from a byte buffer.
///
/// Every read checks the bytes remaining first and either returns a value and advances,
/// or throws a `WireError` and leaves the reader where it was (all-or-nothing, as
/// swift-nio's `ByteBuffer` reads are). Length-prefixed reads check the length against
/// both the bytes remaining and a per-field limit before allocating anything.
public struct WireReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let end: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
        end = bytes.count
    }

    public var remaining: Int { end - offset }
    public var isAtEnd: Bool { offset == end }

    @inline(__always)
    mutating func take(_ count: Int, _ field: String) throws(WireError) -> Range<Int> {
        guard count >= 0, count <= remaining else {
            throw .truncated(field: field, needed: count, available: remaining)
        }
        defer { offset += count }
        return offset..<(offset + count)
    }

    public mutating func readUInt8(_ field: String = "u8") throws(WireError) -> UInt8 {
        bytes[try take(1, field).lowerBound]
    }

    public mutating func readUInt16(_ field: String = "u16") throws(WireError) -> UInt16 {
        let r = try take(2, field)
        return UInt16(bytes[r.lowerBound]) << 8 | UInt16(bytes[r.lowerBound + 1])
    }

    public mutating func readUInt32(_ field: String = "u32") throws(WireError) -> UInt32 {
        let r = try take(4, field)
        var v: UInt32 = 0
        for i in r { v = v << 8 | UInt32(bytes[i]) }
        return v
    }

    public mutating func readUInt64(_ field: String = "u64") throws(WireError) -> UInt64 {
        let r = try take(8, field)
        var v: UInt64 = 0
        for i in r { v = v << 8 | UInt64(bytes[i]) }
        return v
    }

    public mutating func readBool(_ field: String = "bool") throws(WireError) -> Bool {
        let start = offset
        let b = try readUInt8(field)
        switch b {
        case 0: return false
        case 1: return true
        default:
            offset = start
            throw .invalidValue(field: field, reason: "boolean byte is \(b), expected 0 or 1")
        }
    }

    /// Exactly `count` bytes.
    public mutating func readBytes(_ count: Int, _ field: String = "bytes") throws(WireError) -> [UInt8] {
        Array(bytes[try take(count, field)])
    }

    public mutating func readBytes32(_ field: String = "key") throws(WireError) -> Bytes32 {
        let r = try take(32, field)
        return bytes.withUnsafeBytes { Bytes32(unsafeRaw: UnsafeRawBufferPointer(rebasing: $0[r])) }
    }

    /// A length (u8, u16 or u32 as `prefix` says) followed by that many bytes, at most `limit`.
    public mutating func readLengthPrefixed(
        _ prefix: LengthPrefix, limit: Int, _ field: String = "bytes"
    ) throws(WireError) -> [UInt8] {
        let start = offset
        let length: Int
        switch prefix {
        case .u8: length = Int(try readUInt8(field + " length"))
        case .u16: length = Int(try readUInt16(field + " length"))
        case .u32: length = Int(try readUInt32(field + " length"))
        }
        guard length <= limit else {
            offset = start
            throw .lengthExceedsLimit(field: field, length: length, limit: limit)
        }
        guard length <= remaining else {
            let available = remaining
            offset = start
            throw .truncated(field: field, needed: length, available: available)
        }
        return Array(bytes[try take(length, field)])
    }

    /// A length-prefixed UTF-8 string of at most `limit` bytes.
    public mutating func readString(
        _ prefix: LengthPrefix = .u8, limit: Int = 255, _ field: String = "string"
    ) throws(WireError) -> String {
        let start = offset
        let raw = try readLengthPrefixed(prefix, limit: limit, field)
        guard let s = String(validating: raw, as: UTF8.self) else {
            offset = start
            throw .invalidValue(field: field, reason: "not valid UTF-8")
        }
        return s
    }

    /// Decodes one `WireCodable` value, restoring the position if it fails.
    public mutating func read<T: WireCodable>(_ type: T.Type) throws(WireError) -> T {
        let start = offset
        do {
            return try T(from: &self)
        } catch {
            offset = start
            throw error
        }
    }

    /// A count (as `prefix` says, at most `limit`) then that many values. The count is
    /// checked against `limit` and against the bytes remaining (each value takes at least
    /// `minimumElementSize` bytes) before anything is allocated.
    public mutating func readArray<T: WireCodable>(
        of type: T.Type, _ prefix: LengthPrefix, limit: Int, minimumElementSize: Int = 1,
        _ field: String = "array"
    ) throws(WireError) -> [T] {
        let start = offset
        let count: Int
        switch prefix {
        case .u8: count = Int(try readUInt8(field + " count"))
        case .u16: count = Int(try readUInt16(field + " count"))
        case .u32: count = Int(try readUInt32(field + " count"))
        }
        guard count <= limit else {
            offset = start
            throw .lengthExceedsLimit(field: field, length: count, limit: limit)
        }
        guard count * max(1, minimumElementSize) <= remaining else {
            let available = remaining
            offset = start
            throw .truncated(field: field, needed: count * max(1, minimumElementSize), available: available)
        }
        var out = [T]()
        out.reserveCapacity(count)
        do {
            for _ in 0..<count { out.append(try T(from: &self)) }
        } catch {
            offset = start
            throw error
        }
        return out
    }

    /// Throws unless every byte was consumed.
    public func expectEnd() throws(WireError) {
        guard isAtEnd else { throw .trailingBytes(count: remaining) }
    }
}

/// The width of a length or count field.
public enum LengthPrefix: Sendable {
    case u8, u16, u32
}

extension WireReader {
    /// An unsigned LEB128 integer (`WireWriter.writeVarUInt`), in its shortest form only:
    /// a longer one (a last byte of zero after others) or one past 64 bits is an error, so
    /// that a value has one encoding.
    public mutating func readVarUInt(_ field: String = "varint") throws(WireError) -> UInt64 {
        let start = offset
        var v: UInt64 = 0
        for i in 0..<10 {
            guard offset < end else {
                offset = start
                throw .truncated(field: field, needed: 1, available: 0)
            }
            let b = bytes[offset]
            offset += 1
            guard i < 9 || b <= 1 else {
                offset = start
                throw .invalidValue(field: field, reason: "more than 64 bits")
            }
            v |= UInt64(b & 0x7f) << UInt64(7 * i)
            if b & 0x80 == 0 {
                guard b != 0 || i == 0 else {
                    offset = start
                    throw .invalidValue(field: field, reason: "not in its shortest form")
                }
                return v
            }
        }
        offset = start
        throw .invalidValue(field: field, reason: "more than 64 bits")
    }
}
