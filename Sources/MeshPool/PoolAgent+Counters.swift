import MeshCore

/// What a pool agent counts (`PoolAgent.counters`): most are shown by `meshwork status --json` and as
/// Prometheus metrics (`meshwork_pool_*`: Daemon+Control.swift, Metrics.swift); the simulator sums them.
extension PoolAgent {
    public struct Counters: Sendable, Equatable, Codable {
        public var discovers = 0, offers = 0, requests = 0, acks = 0, naks = 0, conflicts = 0
        /// Reclaims this node made (as successor), votes it gave, and offers it refused
        /// because it was fenced.
        public var reclaims = 0, votes = 0, fencedRefusals = 0
        /// DECLINEs this node sent (its address was held by another) and received (an
        /// address it granted turned out held by another).
        public var declinesSent = 0, declinesReceived = 0
        /// Balancing rounds in which this node gave space to a member holding less.
        public var donations = 0
        /// Merges this node signed: its holdings of free space gathered into one.
        public var merges = 0
        /// Times this node caught up with the mesh (after a restart or a suspend), and
        /// times its clock jumped (a suspend) so that it had to.
        public var catchUps = 0, resumes = 0
        /// Times this node stopped using its address because it could not renew it.
        public var leasesExpired = 0
        /// Pool packets whose sender's signature did not verify; requests (DISCOVER,
        /// REQUEST, DECLINE) from nodes that are not live members; REQUESTs for a second
        /// lease by a member that holds one.
        public var badPacketSignatures = 0, refusedNonMembers = 0, refusedSecondLease = 0
        /// Grants dropped because their grantor signed more than the per-member limit allows
        /// (PoolAgent+Limits.swift); anti-entropy offers them again later.
        public var rateLimitedGrants = 0
        /// Checkpoints this view moved onto (of them, taken on trust: this node could not
        /// fold them and held nothing or was catching up; and weighed: it could not fold them
        /// but found their signers holding a quorum in its view), proposed, signed for
        /// others, refused, and not proposed for their size.
        public var checkpoints = 0, checkpointsTrusted = 0, checkpointsWeighed = 0, checkpointsProposed = 0, checkpointsSigned = 0
        public var checkpointsRefused = 0, checkpointsTooLarge = 0
        /// Releases (leaving for good) that gave their space away with a current view (perhaps
        /// made current by the last roll call), and that gave it when the wait for one ran
        /// out (`releaseWaitMax` × 3/4, and the roll call). A node that never caught up gives
        /// nothing (its space is reclaimed instead) and counts in neither.
        public var releasesCurrent = 0, releasesOnTimeout = 0
    }
}
