import MeshCore

/// Per-member limits on new grants (docs/pool.md, "Limits").
///
/// Every grant a member signs is kept and replicated by every node, so a member that signs
/// grants as fast as it can (splitting its space into single addresses, thousands a
/// second) would grow every node's history, disk and anti-entropy traffic without bound.
/// Grants carry no time, so no rule in the fold can tell a flood from a busy member; each
/// node limits what it takes in instead. A node keeps, per grantor, a ceiling on the seq it
/// accepts: the grantor's highest seq it held when it first met the grantor in this run,
/// plus `grantBurst`, plus `grantRate` per second since. A grantor's seqs run without gaps
/// (`signNext`), so the ceiling bounds how many grants a member can add to this node's
/// history per minute, whatever order it sends them in. Grants above it are dropped and
/// counted (`rateLimitedGrants`); anti-entropy offers them again later, and they are taken
/// as the ceiling rises, so a member that was only busy is delayed, never cut off.
///
/// A node just started (for `historyWindow`), or catching up, takes history unlimited:
/// it cannot tell old grants from new ones, and it must learn the mesh's history to grant
/// safely (and a leaving one, to give away all it was given). A flooder can therefore fill a node that is starting up, but not the mesh: what
/// that node passes on meets the others' ceilings.
extension PoolAgent {
    struct GrantCeiling: Sendable {
        var base: UInt64
        var since: Instant
    }

    /// Whether this node takes every grant without a ceiling (see above).
    func takesHistoryUnlimited(now: Instant) -> Bool {
        !isCaughtUp || leaving || now < startedAt + settings.historyWindow
    }

    /// The grantor's ceiling as recorded, or as it starts now: at its highest seq held.
    func grantCeiling(of grantor: NodeID, now: Instant) -> GrantCeiling {
        grantCeilings[grantor] ?? GrantCeiling(base: view.byGrantor[grantor]?.maxSeq ?? 0, since: now)
    }

    /// The highest seq of `grantor` this node accepts now.
    func ceiling(of grantor: NodeID, now: Instant) -> UInt64 {
        let c = grantCeiling(of: grantor, now: now)
        let elapsed = Swift.max(0, (now - c.since).seconds)
        return c.base + settings.grantBurst + UInt64(elapsed * settings.grantRate)
    }

    /// Whether `g` may be taken in now; counts it if not. Records the grantor's ceiling the
    /// first time one of its grants is let through.
    mutating func admits(_ g: Grant, now: Instant) -> Bool {
        guard g.grantor != me, !takesHistoryUnlimited(now: now) else { return true }
        guard g.seq <= ceiling(of: g.grantor, now: now) else {
            counters.rateLimitedGrants += 1
            return false
        }
        if grantCeilings[g.grantor] == nil { grantCeilings[g.grantor] = grantCeiling(of: g.grantor, now: now) }
        return true
    }
}
