import MeshCore

/// The pool agent's timings and limits; each says what it governs.
extension PoolAgent {
    public struct Settings: Sendable, Equatable {
        public var holdTime = Span.seconds(2)
        public var offerWait = Span.milliseconds(50)
        /// How long to wait for offers, and for an ACK; the REQUEST is sent up to
        /// `requestTries` times before discovery starts over, as DHCP clients retransmit.
        public var requestTimeout = Span.milliseconds(300)
        public var requestTries = 3
        public var discoverTargets = 3
        public var backoffBase = Span.milliseconds(200)
        public var backoffMax = Span.seconds(30)
        /// Members a node pushes its own new grants to; forwarders push to
        /// `forwardFanout` (twice that in meshes under 64 members, where pushes to one
        /// member leave too many out until the next digest).
        public var fanout = 3
        public var forwardFanout = 1
        /// Pushes are coalesced for this long, then sent as one batch per target.
        public var pushDelay = Span.milliseconds(20)
        public var syncInterval = Span.seconds(15)
        /// A joiner that knows no grants yet asks one member for its view and waits this
        /// long before DISCOVER, so that it can pick offerers by the space they own.
        public var warmUp = Span.milliseconds(150)
        public var maxPayload = 1300
        /// How long a node must be gone (dead or left, as membership says) before its space
        /// may be reclaimed: the mesh token's reclaim time. (The fence, a node not granting
        /// while live members do not hold a quorum, is immediate.)
        public var reclaimTime = Span.seconds(86400)
        /// The mesh token's lease time, DHCP's: a lease whose holder is gone this long is
        /// reclaimed (its address returns to the pool), and a holder cut off from members
        /// holding most of the pool for half of it stops using its address.
        public var leaseTime = Span.seconds(86400)
        /// How often departures, the fence and this node's own lease are checked: a twentieth
        /// of the reclaim or lease time, whichever is shorter, at least 1 s. A successor asks
        /// again for missing votes this often (at least 2 s).
        public var reclaimCheck: Span { Swift.max(.seconds(1), Swift.min(reclaimTime, leaseTime) * 0.05) }
        public var reclaimAskInterval: Span { Swift.max(.seconds(2), reclaimCheck) }
        /// A balancing round runs this long (with jitter up to twice it) after membership or
        /// the view changes, and every `balanceInterval` besides.
        public var balanceDelay = Span.milliseconds(500)
        public var balanceInterval = Span.seconds(5)
        /// A node catching up (after a restart or a suspend) asks members not yet heard
        /// from this often.
        public var catchUpInterval = Span.seconds(2)
        /// Per-grantor limits on new grants taken in (PoolAgent+Limits.swift): a burst, then
        /// this many a second; and how long after its start a node takes history unlimited.
        public var grantBurst: UInt64 = 4096
        public var grantRate = 16.0
        public var historyWindow = Span.seconds(30)
        /// History compaction: the holder of the pool's first address proposes a checkpoint
        /// once the view holds this many grants (0: never), and asks again those that have
        /// not signed this often (PoolAgent+Checkpoint.swift).
        public var checkpointEvery = 512
        public var checkpointRetry = Span.seconds(5)
        /// A checkpoint takes in only grants the proposer has held this long: the members
        /// asked to sign have most likely received them too (a push, or a digest exchange).
        public var checkpointSettle = Span.seconds(10)
        /// Holdings of free space (grants held at least 2 s) that make a node merge them
        /// into one (0: never; PoolAgent+Balance.swift). Each merge is pushed to every member
        /// like any grant: with 8, merges were 20% of the grant bytes sent in `sim pool
        /// --nodes 40 --cycles 120` (4,395 datagrams per allocation, at most 508 holdings in
        /// a checkpoint); with 16, 14% (4,014 datagrams, 706 holdings; 3,315 and 2,149
        /// without merges). Under sustained churn they pay for themselves: `sim pool --nodes
        /// 40 --cycles 600`, seed 1, with 16: 4,334 datagrams per allocation, 612 holdings,
        /// a full exchange of 531 KiB; without: 6,760, 4,547 and 1,445 KiB
        /// (docs/pool.md, "Merging holdings").
        public var mergeAt = 16
        /// A node that releases (leaves for good) says so at once and gives its space away
        /// this much later, by when the members have heard it is going: none then picks it as
        /// an heir or a taker (`PoolAgent.release`); later if its view does not yet hold all
        /// it was given (at most 3/4 of `releaseWaitMax`), or it is still catching up. The
        /// shell keeps the node running until it has given (`releasePending`), at most
        /// `releaseWaitMax`, then a second more to give on what still comes.
        public var releaseDelay = Span.seconds(1)
        public var releaseWaitMax = Span.seconds(8)
        public init() {}
    }
}
