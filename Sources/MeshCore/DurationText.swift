/// Durations as people write them in flags and tokens: `90s`, `15m`, `24h`, `7d`, or a
/// bare number of seconds. Whole seconds only.
public enum DurationText {
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let text: String
        public init(text: String) { self.text = text }
        public var description: String {
            "'\(text)' is not a duration: write a whole number with a unit s, m, h or d (e.g. 90s, 15m, 24h, 7d)"
        }
    }

    public static func parseSeconds(_ text: String) throws(ParseError) -> UInt64 {
        let t = text.trimmingWhitespace()
        guard let last = t.last else { throw ParseError(text: text) }
        let multiplier: UInt64
        var digits = Substring(t)
        switch last {
        case "s": multiplier = 1; digits = digits.dropLast()
        case "m": multiplier = 60; digits = digits.dropLast()
        case "h": multiplier = 3600; digits = digits.dropLast()
        case "d": multiplier = 86400; digits = digits.dropLast()
        default: multiplier = 1
        }
        guard !digits.isEmpty, digits.count <= 12, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let n = UInt64(digits) else { throw ParseError(text: text) }
        let (v, overflow) = n.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw ParseError(text: text) }
        return v
    }

    /// The shortest exact form: 86400 → "1d", 5400 → "90m", 61 → "61s".
    public static func format(seconds: UInt64) -> String {
        if seconds != 0 && seconds % 86400 == 0 { return "\(seconds / 86400)d" }
        if seconds != 0 && seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds != 0 && seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and newlines.
    public func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }),
              let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
