import MeshCore
import Testing

@Suite struct IPv4Tests {
    @Test func parsesStrictDottedQuad() {
        #expect(IPv4Address("100.80.0.1")?.value == 0x6450_0001)
        #expect(IPv4Address("0.0.0.0")?.value == 0)
        #expect(IPv4Address("255.255.255.255")?.value == .max)
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "a.b.c.d", "1..2.3", " 1.2.3.4", "1.2.3.4 "] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
        #expect(IPv4Address(192, 0, 2, 1).description == "192.0.2.1")
    }

    @Test func parsesPrefixesAndNamesTheProblem() throws {
        let p = try IPv4Prefix(parsing: "100.80.0.0/16")
        #expect(p.size == 65536)
        #expect(p.first.description == "100.80.0.0" && p.last.description == "100.80.255.255")
        #expect(p.contains(IPv4Address("100.80.9.9")!) && !p.contains(IPv4Address("100.81.0.0")!))
        #expect(p.isPrivateUse)
        #expect(!(try IPv4Prefix(parsing: "8.8.0.0/16")).isPrivateUse)
        #expect(throws: IPv4Prefix.ParseError.missingSlash("100.80.0.0")) { try IPv4Prefix(parsing: "100.80.0.0") }
        #expect(throws: IPv4Prefix.ParseError.badAddress("100.800.0.0")) { try IPv4Prefix(parsing: "100.800.0.0/16") }
        #expect(throws: IPv4Prefix.ParseError.badLength("33")) { try IPv4Prefix(parsing: "100.80.0.0/33") }
        #expect(throws: IPv4Prefix.ParseError.badLength("")) { try IPv4Prefix(parsing: "100.80.0.0/") }
        #expect(throws: IPv4Prefix.ParseError.hostBitsSet("100.80.1.0/16", suggestion: "100.80.0.0/16")) {
            try IPv4Prefix(parsing: "100.80.1.0/16")
        }
        #expect(IPv4Prefix.ParseError.hostBitsSet("100.80.1.0/16", suggestion: "100.80.0.0/16").description.contains("did you mean 100.80.0.0/16"))
        #expect(try IPv4Prefix(parsing: "0.0.0.0/0").size == 1 << 32)
    }
}

@Suite struct HostPortTests {
    @Test func parsesForms() throws {
        #expect(try HostPort(parsing: "127.0.0.1:51830") == HostPort(host: "127.0.0.1", port: 51830))
        #expect(try HostPort(parsing: "[::1]:9") == HostPort(host: "::1", port: 9))
        #expect(try HostPort(parsing: "host1.example:51830").host == "host1.example")
        #expect(HostPort(host: "::1", port: 9).description == "[::1]:9")
    }

    @Test func namesTheProblem() {
        #expect(throws: HostPort.ParseError.missingPort("host1")) { try HostPort(parsing: "host1") }
        #expect(throws: HostPort.ParseError.badPort("host1:0")) { try HostPort(parsing: "host1:0") }
        #expect(throws: HostPort.ParseError.badPort("host1:70000")) { try HostPort(parsing: "host1:70000") }
        #expect(throws: HostPort.ParseError.badPort("host1:")) { try HostPort(parsing: "host1:") }
        #expect(throws: HostPort.ParseError.badHost("::1:9")) { try HostPort(parsing: "::1:9") }
        #expect(throws: HostPort.ParseError.badHost("bad host:9")) { try HostPort(parsing: "bad host:9") }
        #expect(throws: HostPort.ParseError.badHost(":9")) { try HostPort(parsing: ":9") }
        #expect(throws: HostPort.ParseError.missingPort("[::1]")) { try HostPort(parsing: "[::1]") }
    }
}

@Suite struct MiscCoreTests {
    @Test func durations() throws {
        #expect(try DurationText.parseSeconds("90s") == 90)
        #expect(try DurationText.parseSeconds("15m") == 900)
        #expect(try DurationText.parseSeconds("24h") == 86400)
        #expect(try DurationText.parseSeconds("7d") == 604_800)
        #expect(try DurationText.parseSeconds("42") == 42)
        for bad in ["", "h", "1.5h", "-1s", "1w", "99999999999999d"] {
            #expect(throws: DurationText.ParseError(text: bad)) { try DurationText.parseSeconds(bad) }
        }
        #expect(DurationText.format(seconds: 86400) == "1d")
        #expect(DurationText.format(seconds: 5400) == "90m")
        #expect(DurationText.format(seconds: 61) == "61s")
        #expect(DurationText.format(seconds: 0) == "0s")
    }

    @Test func hex() {
        #expect(Hex.encode([0x00, 0xab, 0xff]) == "00abff")
        #expect(Hex.decode("00ABff") == [0x00, 0xab, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }

    @Test func seededRandomIsReproducible() {
        var a = SeededRandom(seed: 42), b = SeededRandom(seed: 42), c = SeededRandom(seed: 43)
        let xs = (0..<10).map { _ in a.next() }
        #expect(xs == (0..<10).map { _ in b.next() })
        #expect(xs != (0..<10).map { _ in c.next() })
        // SplitMix64's published first output for seed 0 (Vigna's reference implementation).
        var z = SeededRandom(seed: 0)
        #expect(z.next() == 0xE220_A839_7B1D_CDAF)
    }

    @Test func bytes32AndNodeID() {
        let raw = (0..<32).map { UInt8($0) }
        let b = Bytes32(raw)!
        #expect(b.bytes == raw)
        #expect(Bytes32(raw.dropLast()) == nil)
        let id = NodeID(b)
        #expect(id.hex == Hex.encode(raw))
        #expect(id.fingerprint == "0001020304050607")
        #expect(NodeID(hex: id.hex) == id)
        #expect(NodeID(hex: "00") == nil)
        #expect(Bytes32([0] + raw.dropFirst())! < Bytes32([1] + raw.dropFirst())!)
    }
}

@Suite struct KeyRangePagesTests {
    @Test func pagesCoverEveryKeyOnceAndKeepEqualKeysTogether() {
        var rng = SeededRandom(seed: 3)
        for n in [0, 1, 5, 70, 71, 500] {
            var keys = (0..<n).map { _ in rng.next() }
            if n > 10 { keys[5] = keys[6] }  // an equal pair
            keys.sort()
            let pages = keyRangePages(keys, key: { $0 }, perPage: 7)
            #expect(pages.first?.lo == 0)
            #expect(pages.last?.hi == .max)
            #expect(pages.last?.last == true && pages.dropLast().allSatisfy { !$0.last })
            #expect(pages.flatMap { Array($0.items) } == keys)
            for (a, b) in zip(pages, pages.dropFirst()) { #expect(a.hi &+ 1 == b.lo) }
            for p in pages {
                #expect(p.lo <= p.hi)
                #expect(p.items.allSatisfy { p.lo <= $0 && $0 <= p.hi })
            }
        }
    }
}
