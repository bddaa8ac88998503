import MeshCore

/// Every tunable of the membership protocol. Defaults follow memberlist's
/// `DefaultLANConfig` (hashicorp/memberlist, config.go); docs/gossip.md lists each one.
public struct GossipSettings: Sendable, Equatable {
    /// Time between failure probes (SWIM protocol period). memberlist: 1s.
    public var probeInterval = Span.seconds(1)
    /// How long to wait for a direct ack before asking others to probe. memberlist: 500ms.
    public var probeTimeout = Span.milliseconds(500)
    /// How many members are asked to probe indirectly. memberlist: 3.
    public var indirectChecks = 3
    /// Each update is retransmitted retransmitMult × ceil(log10(N+1)) times. memberlist: 4.
    public var retransmitMult = 4
    /// Suspicion timeout minimum = suspicionMult × log10(max(1,N)) × probeInterval. memberlist: 4.
    public var suspicionMult = 4
    /// Suspicion timeout maximum = this × the minimum (Lifeguard). memberlist: 6.
    public var suspicionMaxTimeoutMult = 6
    /// Full-state anti-entropy with one random member, scaled up above 32 members. memberlist: 30s.
    public var pushPullInterval = Span.seconds(30)
    /// Time between gossip rounds that send pending updates. memberlist: 200ms.
    public var gossipInterval = Span.milliseconds(200)
    /// Members gossiped to per round. memberlist: 3.
    public var gossipNodes = 3
    /// Dead members still receive gossip this long (to learn they are dead and refute). memberlist: 30s.
    public var gossipToTheDeadTime = Span.seconds(30)
    /// Lifeguard local health multiplier cap. memberlist: 8.
    public var awarenessMaxMultiplier = 8
    /// Largest gossip payload before sealing. memberlist: 1400 (UDPBufferSize).
    public var maxPayloadSize = 1300
    /// How long dead members stay in the table before they are forgotten (what reconnect
    /// tries to reach, so that a partition healed within this merges by itself).
    public var deadMemberRetention = Span.seconds(24 * 3600)
    /// How long members that left for good stay in the table, and so in every digest (by
    /// then every member has heard they left). Shorter than the dead's: nobody reconnects
    /// to them, and under churn they are most of the table (`sim pool --nodes 100 --cycles
    /// 2000` kept 2,234 entries at 1,100 simulated seconds with 24 h; at 2 departures a
    /// second, 24 h is 172,800 entries, 2.9 MB of digest per push-pull). memberlist forgets
    /// a departed node after 30 s. Once forgotten, a member that left is still remembered
    /// as a tombstone (its ID and incarnation, in no digest) for `deadMemberRetention`
    /// (Serf's tombstone timeout, 24 h): a stale record of it that a laggard still
    /// gossips changes nothing.
    public var leftMemberRetention = Span.seconds(300)
    /// How often to try anti-entropy with one random dead member, so that the two sides of
    /// a healed partition find each other again (Serf's reconnect; memberlist has none). Serf: 30s.
    public var reconnectInterval = Span.seconds(30)
    /// How often a node with no live peers retries its seeds.
    public var rejoinInterval = Span.seconds(2)

    public init() {}

    /// memberlist's `DefaultLANConfig`.
    public static let lan = GossipSettings()

    /// Retransmissions of each update for a mesh of `n` members.
    public func retransmitLimit(members n: Int) -> Int {
        retransmitMult * Int((log10(Double(n + 1))).rounded(.up))
    }

    /// Lifeguard's suspicion bounds for `n` members: (min, max).
    public func suspicionTimeouts(members n: Int) -> (min: Span, max: Span) {
        let nodeScale = max(1.0, log10(Double(max(1, n))))
        let minimum = probeInterval * (Double(suspicionMult) * nodeScale)
        return (minimum, minimum * Double(suspicionMaxTimeoutMult))
    }

    /// memberlist's pushPullScale: the interval grows with log2(N) above 32 members.
    public func scaledPushPullInterval(members n: Int) -> Span {
        guard n > 32 else { return pushPullInterval }
        let multiplier = Int((log2(Double(n)) - log2(32.0)).rounded(.up)) + 1
        return pushPullInterval * multiplier
    }
}

// Foundation-free logarithms.
@inline(__always) func log10(_ x: Double) -> Double { log2(x) / 3.321928094887362 }
@inline(__always) func log2(_ x: Double) -> Double {
    guard x > 0 else { return -.infinity }
    // x = m × 2^e with m in [1, 2): log2 x = e + log2 m, log2 m by a short series on ln.
    let e = x.exponent
    let m = x.significand
    let y = (m - 1) / (m + 1), y2 = y * y
    var term = y, sum = 0.0
    var k = 1.0
    for _ in 0..<20 {
        sum += term / k
        term *= y2
        k += 2
    }
    return Double(e) + 2 * sum / 0.6931471805599453
}
