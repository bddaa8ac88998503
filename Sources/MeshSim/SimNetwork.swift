import MeshCore

/// The virtual network of the simulators: a datagram arrives after `latency` plus
/// uniform jitter in `0..<jitter`, unless it is lost (probability `loss`).
public struct SimNetwork: Sendable {
    public var latency = Span.milliseconds(5)
    public var jitter = Span.milliseconds(5)
    public var loss = 0.0

    public init(latency: Span = .milliseconds(5), jitter: Span = .milliseconds(5), loss: Double = 0) {
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
    }

    /// How long one datagram takes, or nil if it is lost. Draws from `rng` only for what is
    /// configured (loss, then jitter), so a run replays from its seed.
    func transit(using rng: inout SeededRandom) -> Span? {
        if loss > 0, Double(rng.next() % 1_000_000) / 1e6 < loss { return nil }
        let j = jitter.nanoseconds > 0 ? Int64(rng.next() % UInt64(jitter.nanoseconds)) : 0
        return latency + Span(nanoseconds: j)
    }
}

/// A simulation driven on virtual time.
public protocol VirtualTimeSimulation: AnyObject {
    var now: Instant { get }
    /// Runs events until `time` (inclusive), then sets the clock to `time`.
    func run(until time: Instant)
    func schedule(at time: Instant, _ action: @escaping () -> Void)
}

extension VirtualTimeSimulation {
    public func run(for span: Span) { run(until: now + span) }

    /// Runs `action` once `pending` no longer holds (checked every 100 ms of simulated
    /// time) or at `giveUpAt`, whichever comes first: how a releasing node is kept running
    /// until its pool has given its space away, as the daemon keeps it.
    func after(_ pending: @escaping () -> Bool, giveUpAt: Instant, _ action: @escaping () -> Void) {
        if pending(), now < giveUpAt {
            schedule(at: now + .milliseconds(100)) { [weak self] in self?.after(pending, giveUpAt: giveUpAt, action) }
        } else {
            action()
        }
    }

    /// Runs until `condition` holds (checked every `step`) or `limit` passes; returns whether it held.
    @discardableResult
    public func run(until condition: () -> Bool, within limit: Span, step: Span = .milliseconds(100)) -> Bool {
        let end = now + limit
        while now < end {
            if condition() { return true }
            run(until: Swift.min(end, now + step))
        }
        return condition()
    }
}
