/// A point on a monotonic clock, in nanoseconds from an arbitrary origin. Protocol cores
/// never read a clock: the shell (the daemon's real clock, or the simulator's virtual
/// one) passes `now` into every call.
public struct Instant: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)
    /// Later than every real instant: "no deadline".
    public static let distantFuture = Instant(nanoseconds: .max / 2)

    public static func < (l: Instant, r: Instant) -> Bool { l.nanoseconds < r.nanoseconds }

    public static func + (l: Instant, r: Span) -> Instant { Instant(nanoseconds: l.nanoseconds &+ r.nanoseconds) }
    public static func - (l: Instant, r: Span) -> Instant { Instant(nanoseconds: l.nanoseconds &- r.nanoseconds) }
    public static func - (l: Instant, r: Instant) -> Span { Span(nanoseconds: l.nanoseconds &- r.nanoseconds) }

    public var description: String { "t+\(Span(nanoseconds: nanoseconds))" }
}

/// A length of time in nanoseconds (a plain integer, so the simulator's arithmetic is
/// cheap and exact).
public struct Span: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static func seconds(_ s: Double) -> Span { Span(nanoseconds: Int64(s * 1e9)) }
    public static func milliseconds(_ ms: Int64) -> Span { Span(nanoseconds: ms * 1_000_000) }
    public static let zero = Span(nanoseconds: 0)

    public var seconds: Double { Double(nanoseconds) / 1e9 }

    public static func < (l: Span, r: Span) -> Bool { l.nanoseconds < r.nanoseconds }
    public static func + (l: Span, r: Span) -> Span { Span(nanoseconds: l.nanoseconds &+ r.nanoseconds) }
    public static func - (l: Span, r: Span) -> Span { Span(nanoseconds: l.nanoseconds &- r.nanoseconds) }
    public static func * (l: Span, r: Double) -> Span { Span(nanoseconds: Int64(Double(l.nanoseconds) * r)) }
    public static func * (l: Span, r: Int) -> Span { Span(nanoseconds: l.nanoseconds &* Int64(r)) }

    public var description: String {
        let s = seconds
        return s >= 1 || s == 0 ? "\((s * 1000).rounded() / 1000)s" : "\((s * 1e6).rounded() / 1000)ms"
    }
}
