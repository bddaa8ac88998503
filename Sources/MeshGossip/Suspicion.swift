import MeshCore

/// Lifeguard's dynamic suspicion timeout (Dadgar et al., "Lifeguard: Local Health
/// Awareness for More Accurate Failure Detection", 2018, §IV-B; memberlist suspicion.go):
/// the timeout starts at `max` and shrinks towards `min` as independent members confirm
/// the suspicion: timeout = max(min, max − (max − min) × log(C+1) / log(K+1)).
struct Suspicion: Sendable {
    let start: Instant
    let min: Span
    let max: Span
    /// Confirmations expected before the timeout reaches its minimum.
    let k: Int
    private(set) var confirmers: Set<NodeID>

    init(from: NodeID, start: Instant, min: Span, max: Span, k: Int) {
        self.start = start
        self.min = min
        self.max = max
        self.k = k
        confirmers = [from]
    }

    /// Records a confirmation; returns whether it counted (a new member, and fewer than
    /// `k` so far: past that the timeout is at its minimum and re-gossip would be noise).
    mutating func confirm(from: NodeID) -> Bool {
        guard confirmers.count - 1 < k else { return false }
        return confirmers.insert(from).inserted
    }

    var deadline: Instant {
        // With no confirmations to expect (tiny meshes), memberlist takes the minimum.
        guard k > 0 else { return start + min }
        let c = confirmers.count - 1
        guard c > 0 else { return start + max }
        let frac = log2(Double(c + 1)) / log2(Double(k + 1))
        let t = max - (max - min) * Swift.min(1, frac)
        return start + (t < min ? min : t)
    }
}
