/// A `HOST:PORT` endpoint as a user writes it: an IPv4 address, a bracketed IPv6
/// address (`[::1]:51830`) or a DNS name, and a port. Resolution happens in the
/// transport; this type only checks the shape.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingPort(String)
        case badPort(String)
        case badHost(String)

        public var description: String {
            switch self {
            case .missingPort(let t):
                return "'\(t)' has no port: write HOST:PORT, e.g. 192.0.2.1:51830 or [2001:db8::1]:51830"
            case .badPort(let t):
                return "'\(t)' has an invalid port: use a number from 1 to 65535"
            case .badHost(let t):
                return "'\(t)' has an invalid host: use an IPv4 address, a bracketed IPv6 address or a DNS name"
            }
        }
    }

    public static let maxHostLength = 253

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(ParseError) {
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .badHost(text) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .missingPort(text) }
            portText = rest.dropFirst()
            guard !host.isEmpty, host.contains(":"),
                  host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { throw .badHost(text) }
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .missingPort(text) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else { throw .badHost(text) }  // IPv6 needs brackets
            guard Self.isValidName(host) else { throw .badHost(text) }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = UInt16(portText), port != 0 else { throw .badPort(text) }
        self.host = String(host)
        self.port = port
    }

    /// A DNS name or dotted IPv4 address: labels of letters, digits and hyphens.
    static func isValidName(_ host: Substring) -> Bool {
        guard !host.isEmpty, host.utf8.count <= maxHostLength else { return false }
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
