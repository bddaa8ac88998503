/// An IPv4 address, held as a host-order 32-bit value.
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Strict dotted-quad: four decimal octets 0–255, no leading zeros, nothing else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(part.count > 1 && part.first == "0"),
                  let octet = UInt8(part) else { return nil }
            v = v << 8 | UInt32(octet)
        }
        value = v
    }

    public var octets: (UInt8, UInt8, UInt8, UInt8) {
        (UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value))
    }

    public var description: String {
        let o = octets
        return "\(o.0).\(o.1).\(o.2).\(o.3)"
    }

    public static func < (l: IPv4Address, r: IPv4Address) -> Bool { l.value < r.value }
}

/// An IPv4 prefix in CIDR form, e.g. `100.80.0.0/16`. The address is always the network
/// address: host bits set are an error, not silently cleared.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible {
    public let network: IPv4Address
    public let length: UInt8

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingSlash(String)
        case badAddress(String)
        case badLength(String)
        case hostBitsSet(String, suggestion: String)

        public var description: String {
            switch self {
            case .missingSlash(let t):
                return "'\(t)' is not a CIDR prefix: write it as ADDRESS/LENGTH, e.g. 100.80.0.0/16"
            case .badAddress(let t):
                return "'\(t)' is not a valid IPv4 address: write four decimal octets 0-255, e.g. 100.80.0.0"
            case .badLength(let t):
                return "'\(t)' is not a valid prefix length: use a whole number from 0 to 32"
            case .hostBitsSet(let t, let s):
                return "'\(t)' has host bits set after the prefix length; did you mean \(s)?"
            }
        }
    }

    public init(network: IPv4Address, length: UInt8) throws(ParseError) {
        guard length <= 32 else { throw .badLength(String(length)) }
        let masked = IPv4Address(network.value & Self.mask(length))
        guard masked == network else {
            throw .hostBitsSet("\(network)/\(length)", suggestion: "\(masked)/\(length)")
        }
        self.network = network
        self.length = length
    }

    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw .missingSlash(text) }
        guard let address = IPv4Address(parts[0]) else { throw .badAddress(String(parts[0])) }
        guard parts[1].count <= 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
              let length = UInt8(parts[1]), length <= 32 else { throw .badLength(String(parts[1])) }
        let masked = IPv4Address(address.value & Self.mask(length))
        guard masked == address else {
            throw .hostBitsSet(text, suggestion: "\(masked)/\(length)")
        }
        self.network = address
        self.length = length
    }

    public static func mask(_ length: UInt8) -> UInt32 {
        length == 0 ? 0 : ~UInt32(0) << (32 - UInt32(length))
    }

    /// Number of addresses covered, 2^(32-length).
    public var size: UInt64 { UInt64(1) << (32 - UInt64(length)) }
    public var first: IPv4Address { network }
    public var last: IPv4Address { IPv4Address(network.value | ~Self.mask(length)) }

    public func contains(_ address: IPv4Address) -> Bool {
        address.value & Self.mask(length) == network.value
    }

    /// Whether the prefix lies inside space set aside for private use
    /// (RFC 1918, or RFC 6598 shared address space 100.64.0.0/10 as Tailscale uses).
    public var isPrivateUse: Bool {
        let privateBlocks: [(UInt32, UInt8)] = [
            (IPv4Address(10, 0, 0, 0).value, 8), (IPv4Address(172, 16, 0, 0).value, 12),
            (IPv4Address(192, 168, 0, 0).value, 16), (IPv4Address(100, 64, 0, 0).value, 10),
        ]
        return privateBlocks.contains { net, len in
            length >= len && network.value & Self.mask(len) == net
        }
    }

    public var description: String { "\(network)/\(length)" }
}
