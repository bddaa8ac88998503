/// A concrete UDP endpoint: an IPv4 or IPv6 address and a port. This is what membership
/// records carry and what the transport sends to (names are resolved before this).
public struct Endpoint: Hashable, Sendable, CustomStringConvertible, Comparable {
    public enum Address: Hashable, Sendable {
        case v4(IPv4Address)
        /// 16 bytes, network order, as two big-endian words.
        case v6(UInt64, UInt64)
    }

    public var address: Address
    public var port: UInt16

    public init(_ address: Address, port: UInt16) {
        self.address = address
        self.port = port
    }

    public init(_ v4: IPv4Address, port: UInt16) { self.init(.v4(v4), port: port) }

    /// `a.b.c.d:port` or `[v6]:port` with a literal address (no names).
    public init?(_ text: String) {
        guard let hp = try? HostPort(parsing: text) else { return nil }
        if let v4 = IPv4Address(hp.host) {
            self.init(.v4(v4), port: hp.port)
        } else if let v6 = Self.parseIPv6(hp.host) {
            self.init(.v6(v6.0, v6.1), port: hp.port)
        } else {
            return nil
        }
    }

    public var ipv6Bytes: [UInt8]? {
        guard case .v6(let hi, let lo) = address else { return nil }
        return (0..<8).map { UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64($0))) }
    }

    public var isLoopback: Bool {
        switch address {
        case .v4(let a): return a.value >> 24 == 127
        case .v6(let hi, let lo): return hi == 0 && lo == 1
        }
    }

    public var isUnspecified: Bool {
        switch address {
        case .v4(let a): return a.value == 0
        case .v6(let hi, let lo): return hi == 0 && lo == 0
        }
    }

    public var hostText: String {
        switch address {
        case .v4(let a): return a.description
        case .v6:
            let b = ipv6Bytes!
            let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }
            return Self.compress(groups)
        }
    }

    public var description: String {
        if case .v6 = address { return "[\(hostText)]:\(port)" }
        return "\(hostText):\(port)"
    }

    public static func < (l: Endpoint, r: Endpoint) -> Bool { l.description < r.description }

    /// RFC 5952 style: the longest run of two or more zero groups becomes "::".
    static func compress(_ groups: [String]) -> String {
        var best = (start: -1, len: 0), cur = (start: -1, len: 0)
        for (i, g) in groups.enumerated() {
            if g == "0" {
                cur = cur.start < 0 ? (i, 1) : (cur.start, cur.len + 1)
                if cur.len > best.len { best = cur }
            } else {
                cur = (-1, 0)
            }
        }
        guard best.len >= 2 else { return groups.joined(separator: ":") }
        let head = groups[..<best.start].joined(separator: ":")
        let tail = groups[(best.start + best.len)...].joined(separator: ":")
        return head + "::" + tail
    }

    /// Parses IPv6 text (with optional "::" and an embedded IPv4 tail); nil if malformed.
    static func parseIPv6(_ text: String) -> (UInt64, UInt64)? {
        var groups: [UInt16] = []
        let halves = text.components(separatedByString: "::")
        guard halves.count <= 2 else { return nil }
        func parse(_ part: String) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in pieces.enumerated() {
                if i == pieces.count - 1, p.contains("."), let v4 = IPv4Address(p) {
                    out.append(UInt16(v4.value >> 16))
                    out.append(UInt16(v4.value & 0xffff))
                } else {
                    guard (1...4).contains(p.count), let v = UInt16(p, radix: 16) else { return nil }
                    out.append(v)
                }
            }
            return out
        }
        guard let head = parse(halves[0]) else { return nil }
        if halves.count == 2 {
            guard let tail = parse(halves[1]), head.count + tail.count < 8 else { return nil }
            groups = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard head.count == 8 else { return nil }
            groups = head
        }
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<4 { hi = hi << 16 | UInt64(groups[i]) }
        for i in 4..<8 { lo = lo << 16 | UInt64(groups[i]) }
        return (hi, lo)
    }
}

extension String {
    func components(separatedByString sep: String) -> [String] {
        var out: [String] = []
        var rest = Substring(self)
        while let r = rest.firstRange(of: sep) {
            out.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        out.append(String(rest))
        return out
    }
}
