import MeshCore
import MeshWire
import Testing

/// Random values of every wire type, from a seed (printed on failure via the test name).
struct Gen {
    var rng: SeededRandom
    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    mutating func nodeID() -> NodeID { NodeID(bytes: rng.bytes(32))! }
    mutating func ipv4() -> IPv4Address { IPv4Address(UInt32(truncatingIfNeeded: rng.next())) }
    mutating func prefix() -> IPv4Prefix {
        let len = UInt8(rng.next() % 33)
        return try! IPv4Prefix(network: IPv4Address(ipv4().value & IPv4Prefix.mask(len)), length: len)
    }
    mutating func hostPort() -> HostPort {
        let port = UInt16(truncatingIfNeeded: rng.next() % 65535 + 1)
        switch rng.next() % 3 {
        case 0: return HostPort(host: ipv4().description, port: port)
        case 1: return HostPort(host: "fd00::\(rng.next() % 0xffff)", port: port)
        default:
            let labels = (0...(rng.next() % 3)).map { _ in "h" + String(rng.next() % 100_000, radix: 36) }
            return HostPort(host: labels.joined(separator: "."), port: port)
        }
    }
    mutating func header() -> PacketHeader {
        PacketHeader(type: MessageType.allCases[Int(rng.next() % UInt64(MessageType.allCases.count))])
    }
}

@Suite struct WireRoundTripTests {
    @Test(arguments: MessageType.allCases)
    func everyMessageTypeHeaderRoundTrips(type: MessageType) throws {
        let h = PacketHeader(type: type)
        let bytes = h.wireBytes
        #expect(bytes == [PacketHeader.currentVersion, type.rawValue])
        #expect(try PacketHeader(wireBytes: bytes) == h)
    }

    @Test func headerRejectsUnknownTypeAndVersion() {
        #expect(throws: WireError.unknownType(0xee)) { try PacketHeader(wireBytes: [1, 0xee]) }
        #expect(throws: WireError.unknownType(0)) { try PacketHeader(wireBytes: [1, 0]) }
        #expect(throws: WireError.unsupportedVersion(2)) { try PacketHeader(wireBytes: [2, 1]) }
        #expect(throws: WireError.trailingBytes(count: 1)) { try PacketHeader(wireBytes: [1, 1, 0]) }
    }

    /// Property: for many random values of every wire type, decode(encode(x)) == x, and
    /// every strict prefix of the encoding is rejected with a WireError that leaves the
    /// reader where it was.
    @Test(arguments: [UInt64(1), 2, 3, 0xdead_beef])
    func randomValuesRoundTrip(seed: UInt64) throws {
        var g = Gen(seed: seed)
        for _ in 0..<300 {
            try check(g.nodeID())
            try check(g.ipv4())
            try check(g.prefix())
            try check(g.hostPort())
            try check(g.header())
        }
    }

    func check<T: WireCodable & Equatable>(_ value: T) throws {
        let bytes = value.wireBytes
        #expect(try T(wireBytes: bytes) == value, "round trip of \(value)")
        for n in 0..<bytes.count {
            var r = WireReader(Array(bytes.prefix(n)))
            #expect(throws: WireError.self) { try r.read(T.self) }
            #expect(r.offset == 0, "a failed read of \(T.self) consumed bytes")
        }
        #expect(throws: WireError.trailingBytes(count: 1)) { try T(wireBytes: bytes + [0]) }
    }

    @Test func arraysRoundTrip() throws {
        var g = Gen(seed: 9)
        let values = (0..<20).map { _ in g.hostPort() }
        var w = WireWriter()
        w.writeArray(.u16, values)
        var r = WireReader(w.bytes)
        #expect(try r.readArray(of: HostPort.self, .u16, limit: 20, minimumElementSize: 4) == values)
        try r.expectEnd()
        for n in 0..<w.bytes.count {
            var t = WireReader(Array(w.bytes.prefix(n)))
            #expect(throws: WireError.self) { try t.readArray(of: HostPort.self, .u16, limit: 20, minimumElementSize: 4) }
            #expect(t.offset == 0)
        }
    }
}

@Suite struct WireReaderTests {
    @Test func integersAreBigEndian() throws {
        var w = WireWriter()
        w.writeUInt8(0x01)
        w.writeUInt16(0x0203)
        w.writeUInt32(0x0405_0607)
        w.writeUInt64(0x0809_0a0b_0c0d_0e0f)
        w.writeBool(true)
        #expect(w.bytes == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 1])
        var r = WireReader(w.bytes)
        #expect(try r.readUInt8() == 1)
        #expect(try r.readUInt16() == 0x0203)
        #expect(try r.readUInt32() == 0x0405_0607)
        #expect(try r.readUInt64() == 0x0809_0a0b_0c0d_0e0f)
        #expect(try r.readBool())
        #expect(r.isAtEnd)
    }

    @Test func truncatedIntegersThrowAndConsumeNothing() {
        var r = WireReader([1, 2, 3])
        #expect(throws: WireError.truncated(field: "u32", needed: 4, available: 3)) { try r.readUInt32() }
        #expect(r.offset == 0)
        #expect(throws: WireError.truncated(field: "u64", needed: 8, available: 3)) { try r.readUInt64() }
        #expect(r.offset == 0)
        #expect(throws: WireError.truncated(field: "x", needed: 4, available: 3)) { try r.readBytes(4, "x") }
        #expect(throws: WireError.truncated(field: "x", needed: -1, available: 3)) { try r.readBytes(-1, "x") }
        #expect(r.offset == 0)
    }

    @Test func varintsRoundTripInTheirShortestFormOnly() throws {
        let values: [UInt64] = [0, 1, 127, 128, 255, 300, 16383, 16384, 1 << 32, UInt64.max - 1, UInt64.max]
        var w = WireWriter()
        for v in values { w.writeVarUInt(v) }
        #expect(w.bytes.prefix(4) == [0, 1, 0x7f, 0x80])
        var r = WireReader(w.bytes)
        for v in values { #expect(try r.readVarUInt() == v) }
        #expect(r.isAtEnd)
        // Longer than needed, past 64 bits, or cut short: an error that consumes nothing.
        for bad: [UInt8] in [[0x80, 0x00], [0x81, 0x80, 0x00], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                             [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], [0x80], []] {
            var t = WireReader(bad)
            #expect(throws: WireError.self) { try t.readVarUInt() }
            #expect(t.offset == 0)
        }
    }

    @Test func badBooleanIsInvalid() {
        var r = WireReader([2])
        #expect(throws: WireError.invalidValue(field: "bool", reason: "boolean byte is 2, expected 0 or 1")) { try r.readBool() }
        #expect(r.offset == 0)
    }

    /// Every length field that points past the end of the input is rejected before any
    /// allocation, for every prefix width, and nothing is consumed.
    @Test(arguments: [LengthPrefix.u8, .u16, .u32])
    func lengthPastEndIsRejected(prefix: LengthPrefix) {
        for claimed in [1, 5, 200, 255] {
            for present in 0..<min(claimed, 8) {
                var w = WireWriter()
                switch prefix {
                case .u8: w.writeUInt8(UInt8(claimed))
                case .u16: w.writeUInt16(UInt16(claimed))
                case .u32: w.writeUInt32(UInt32(claimed))
                }
                w.writeBytes([UInt8](repeating: 0x61, count: present))
                var r = WireReader(w.bytes)
                #expect(throws: WireError.truncated(field: "f", needed: claimed, available: present)) {
                    try r.readLengthPrefixed(prefix, limit: 1000, "f")
                }
                #expect(r.offset == 0)
                #expect(throws: WireError.truncated(field: "f", needed: claimed, available: present)) {
                    try r.readString(prefix, limit: 1000, "f")
                }
                #expect(r.offset == 0)
            }
        }
    }

    @Test func hugeLengthsHitTheLimitFirst() {
        var w = WireWriter()
        w.writeUInt32(0xffff_ffff)
        var r = WireReader(w.bytes)
        #expect(throws: WireError.lengthExceedsLimit(field: "blob", length: 0xffff_ffff, limit: 65536)) {
            try r.readLengthPrefixed(.u32, limit: 65536, "blob")
        }
        #expect(r.offset == 0)
        // An array count that could not fit in the remaining bytes is rejected before reserving space.
        var a = WireReader([0xff, 0xff, 0, 0])
        #expect(throws: WireError.truncated(field: "peers", needed: 65535 * 4, available: 2)) {
            try a.readArray(of: HostPort.self, .u16, limit: 100_000, minimumElementSize: 4, "peers")
        }
        var b = WireReader([0xff, 0xff])
        #expect(throws: WireError.lengthExceedsLimit(field: "peers", length: 65535, limit: 16)) {
            try b.readArray(of: HostPort.self, .u16, limit: 16, minimumElementSize: 4, "peers")
        }
    }

    @Test func invalidUTF8IsRejected() {
        var r = WireReader([2, 0xc3, 0x28])
        #expect(throws: WireError.invalidValue(field: "string", reason: "not valid UTF-8")) { try r.readString() }
        #expect(r.offset == 0)
    }

    @Test func invalidEmbeddedValuesAreRejected() {
        // 10.0.0.1/8 has host bits set.
        #expect(throws: WireError.self) { try IPv4Prefix(wireBytes: [10, 0, 0, 1, 8]) }
        #expect(throws: WireError.self) { try IPv4Prefix(wireBytes: [10, 0, 0, 0, 33]) }
        // A host with a space in it, and port 0.
        #expect(throws: WireError.self) { try HostPort(wireBytes: [3, 0x61, 0x20, 0x62, 0, 1]) }
        #expect(throws: WireError.self) { try HostPort(wireBytes: [1, 0x61, 0, 0]) }
    }

    /// Random garbage never traps; it decodes or throws.
    @Test func garbageNeverTraps() {
        var rng = SeededRandom(seed: 77)
        for _ in 0..<5000 {
            let bytes = rng.bytes(Int(rng.next() % 40))
            _ = try? PacketHeader(wireBytes: bytes)
            _ = try? HostPort(wireBytes: bytes)
            _ = try? IPv4Prefix(wireBytes: bytes)
            var r = WireReader(bytes)
            _ = try? r.readArray(of: HostPort.self, .u8, limit: 16, minimumElementSize: 4)
        }
    }
}
