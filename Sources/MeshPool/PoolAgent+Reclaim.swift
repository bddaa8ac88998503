import MeshCore

/// Reclaim and the fence (docs/pool.md, "Reclaim").
///
/// A node that owns space and that membership says is gone (dead or left) for longer than
/// the reclaim time T has each of its holdings taken over by a *successor*: the live owner
/// of the next stretch of the pool after it. The successor asks every live owner for a
/// signed vote; once the voters held a quorum of the pool when they voted (outside the
/// reclaimed range; RingView.voteWeight) it signs a `reclaim` grant carrying them, which
/// every node checks by itself. A node whose live members (itself included, suspects not)
/// do not hold a quorum grants nothing (the fence): so a node on the minority side of a
/// partition stops long before the majority side can reclaim its space, and holdings on
/// each side are disjoint parts of one pool, so only one side can ever hold a quorum.
extension PoolAgent {
    struct Proposal: Sendable {
        var target: NodeID
        var cutoff: UInt64
        var votes: [NodeID: ReclaimVote] = [:]
        /// When this node may next fetch a voter's missing grants.
        var nextPullAt = Instant.zero
        var nextAskAt: Instant
    }

    public enum ForceReclaimError: Error, Equatable, Sendable {
        case ownNode
        case alive
        case holdsNothing
        /// The mesh token names no admin key: nothing may force a reclaim.
        case noAdminKey
        /// No holding came with a valid admin signature.
        case notAuthorized
        /// This node has not caught up with the mesh since it started (its view may be old).
        case catchingUp
    }

    /// Whether this node must not grant now: the live members (itself included) do not
    /// hold a quorum of the pool. Immediate, with no grace: on the minority side of a
    /// partition nothing is granted that the majority could later reclaim (docs/pool.md).
    ///
    /// A node that was fenced for half the reclaim time or longer may have had its space
    /// reclaimed by the other side meanwhile: when the fence lifts, it catches up before it
    /// grants again (found in the simulator: a node healed from a long partition granted
    /// from space already reclaimed, before the reclaim reached it).
    public mutating func isFenced(now: Instant) -> Bool {
        if hasQuorum() {
            if let since = fencedSince, now - since >= settings.reclaimTime * 0.5, isCaughtUp { beginCatchUp(now: now) }
            fencedSince = nil
            lastQuorumAt = now
            return false
        }
        if fencedSince == nil {
            fencedSince = now
            // Fenced may only mean that this view lacks grants (a joiner whose first digest
            // exchange went to a member that had just died): compare views soon.
            nextSyncAt = min(nextSyncAt, now + settings.catchUpInterval)
        }
        return true
    }

    /// This node's own lease lapses as DHCP's does when it cannot be renewed: after half the
    /// lease time without live members holding a quorum (renewal rides on membership), the
    /// node stops using its address, before the others may reclaim it (after the whole
    /// lease time). It takes it back (sticky) once it reaches a quorum again, if it is
    /// still its own.
    mutating func checkOwnLease(now: Instant, _ out: inout [Output]) {
        guard case .bound(let a) = phase, isFenced(now: now), now - (lastQuorumAt ?? startedAt) >= settings.leaseTime * 0.5 else { return }
        expireOwnLease(a, &out)
    }

    mutating func expireOwnLease(_ a: UInt32, _ out: inout [Output]) {
        counters.leasesExpired += 1
        phase = .exhausted(retryAt: lastNow + settings.backoffBase * 5)
        leaseSuspended = true
        waitingReason = "lease lapsed: cut off from members holding most of the pool for half the lease time; taking it back once they are reached"
        out.append(.event(.expired(a)))
    }

    /// Addresses (space and leases) held by this node and the live members, by this view.
    public mutating func liveWeight() -> UInt64 { liveHolding().weight }

    /// What this node and the members membership says are alive (not suspected) hold, and
    /// whether that includes the pool's first address (the tie-break at exactly half).
    /// Suspects do not count: a partition fences its minority side as soon as membership
    /// suspects the other side, seconds before it declares it dead.
    mutating func liveHolding() -> (weight: UInt64, anchor: Bool) { holding(countingSuspects: false) }

    /// What this node and its members hold (suspects too, or not), and whether that
    /// includes the pool's first address.
    mutating func holding(countingSuspects: Bool) -> (weight: UInt64, anchor: Bool) {
        func counts(_ id: NodeID) -> Bool { id == me || (isMember(id) && (countingSuspects || !suspected.contains(id))) }
        var w: UInt64 = 0
        for (id, n) in view.heldByOwner() where counts(id) { w += n }
        // The fold is sorted by range: the first stretch holds the pool's first address.
        let anchor = view.ownership().first.map { $0.range.contains(view.pool.first) && counts($0.owner) } ?? false
        return (w, anchor)
    }

    mutating func hasQuorum() -> Bool {
        guard view.hasGenesis else { return false }
        let (w, anchor) = liveHolding()
        return RingView.isQuorum(weight: w, holdsAnchor: anchor, of: view.pool)
    }

    /// Whether this node and every member it knows (suspects too) hold a quorum of the pool
    /// now. If not, no set of votes can carry a reclaim started now (voters are members, and
    /// a vote weighs what its signer holds), so none is started or asked for: on the
    /// minority side of a partition, or on both sides of one that splits a mesh while its
    /// space is still moving (each side missing grants the other made, both may fence),
    /// every successor otherwise asked and weighed votes for every holding of the other
    /// side, to no end (`sim pool --nodes 300 --partition-at 2s --heal-at 90s --reclaim 20s`
    /// crawled: weighing votes took half the run's time).
    mutating func membersHoldQuorum() -> Bool {
        guard view.hasGenesis else { return false }
        let (w, anchor) = holding(countingSuspects: true)
        return RingView.isQuorum(weight: w, holdsAnchor: anchor, of: view.pool)
    }

    func isMember(_ id: NodeID) -> Bool {
        let i = insertionIndex(id)
        return i < members.count && members[i] == id
    }

    /// Owners of space that membership says are gone, with how long this node has seen them gone.
    public func departures(now: Instant) -> [(node: NodeID, gone: Span)] {
        absentSince.map { ($0.key, now - $0.value) }.sorted { $0.node < $1.node }
    }

    /// Notes who is gone, updates the fence, and starts reclaims this node is successor for.
    mutating func checkDepartures(now: Instant, _ out: inout [Output]) {
        let own = view.ownership()
        var gone = Set<NodeID>()
        for o in own where o.owner != me && !isMember(o.owner) { gone.insert(o.owner) }
        absentSince = absentSince.filter { gone.contains($0.key) }
        for d in gone where absentSince[d] == nil { absentSince[d] = now }
        let fenced = isFenced(now: now)
        checkOwnLease(now: now, &out)
        let stillStarting = fencedReported == nil && now - startedAt < settings.reclaimTime * 0.5
        if fenced != fencedReported, !(fenced && stillStarting) {
            fencedReported = fenced
            out.append(.event(.fenced(fenced)))
        }
        // Proposals whose target came back, or whose holding it no longer holds, are dropped.
        let held = Set(own.map { HeldBy(grant: $0.grant, owner: $0.owner) })
        proposals = proposals.filter { x, p in absentSince[p.target] != nil && held.contains(HeldBy(grant: x, owner: p.target)) }
        // Fenced, this node starts none: on the minority side of a partition, members of the
        // other side are declared dead one by one (each after its own suspicion time), and
        // with those still suspected the members may seem to hold a quorum for a while
        // (ScenarioTests, partition, seed 4: the minority voted).
        guard !fenced, membersHoldQuorum() else { return }
        var considered = Set<Bytes32>()
        let successors = Successors(own, live: { $0 == me || isMember($0) })
        for (i, o) in own.enumerated() {
            // A bounded number at a time: each proposal weighs votes against a rewound fold,
            // and a member that granted its space to thousands of made-up IDs must not make
            // every successor do thousands of those a second. The rest wait for the next check.
            guard proposals.count < Self.proposalLimit else { break }
            // Space after the reclaim time; a lease after the lease time (DHCP's expiry).
            let after = o.kind == .lease ? settings.leaseTime : settings.reclaimTime
            guard isCaughtUp, let since = absentSince[o.owner], now - since >= after, proposals[o.grant] == nil,
                  considered.insert(o.grant).inserted, successors.after(i) == me else { continue }
            startProposal(holding: o.grant, target: o.owner, now: now, &out)
        }
    }

    /// At most this many reclaims are under way at once on one node (a successor's
    /// proposals); more holdings due wait for the next check.
    static var proposalLimit: Int { 16 }

    struct HeldBy: Hashable {
        var grant: Bytes32
        var owner: NodeID
    }

    /// For each stretch of the ownership list: the live owner of the first stretch after
    /// all of its holding's stretches (going round the pool), or nil: the successor that
    /// reclaims the holding once its owner is gone. Computed for the whole list in linear
    /// time (a view with thousands of absent owners must not cost a scan per stretch).
    struct Successors {
        let own: [RingView.Ownership]
        /// The last index of each holding's stretches.
        var lastOf: [Bytes32: Int] = [:]
        /// The live owner of the first stretch after index j (cyclic), or nil if none.
        var nextLive: [NodeID?]

        init(_ own: [RingView.Ownership], live: (NodeID) -> Bool) {
            self.own = own
            for (j, o) in own.enumerated() { lastOf[o.grant] = j }
            let isLive = own.map { live($0.owner) }
            nextLive = Array(repeating: nil, count: own.count)
            var next: NodeID?
            // Two passes backwards: the second carries the wrap-around.
            for _ in 0..<2 {
                for j in own.indices.reversed() {
                    nextLive[j] = next
                    if isLive[j] { next = own[j].owner }
                }
            }
        }

        func after(_ i: Int) -> NodeID? {
            let o = own[i]
            guard let n = nextLive[lastOf[o.grant] ?? i], n != o.owner else { return nil }
            return n
        }
    }

    mutating func startProposal(holding x: Bytes32, target: NodeID, now: Instant, _ out: inout [Output]) {
        var p = Proposal(target: target, cutoff: view.highestSeq(of: target) ?? 0, nextAskAt: now + settings.reclaimAskInterval)
        if votedFor[x] == nil || votedFor[x] == me, let v = makeVote(holding: x, cutoff: p.cutoff, successor: me) {
            if votedFor[x] != me {
                votedFor[x] = me
                out.append(.persistVote(holding: x, successor: me))
            }
            p.votes[me] = v
            votedCutoff[x] = p.cutoff
            counters.votes += 1  // votes signed here: the successor's own too
        }
        proposals[x] = p
        sendAsks(holding: x, &out)
        completeIfMajority(holding: x, &out)
    }

    /// Asks every live owner that has not voted yet.
    mutating func sendAsks(holding x: Bytes32, again: Bool = false, _ out: inout [Output]) {
        guard let p = proposals[x] else { return }
        var asked = Set<NodeID>()
        for o in view.ownership() where o.owner != me && o.owner != p.target && p.votes[o.owner] == nil && isMember(o.owner) {
            guard asked.insert(o.owner).inserted else { continue }
            let packet = signed(.reclaimAsk(holding: x, cutoff: p.cutoff))
            out.append(again ? .resend(packet, to: o.owner) : .send(packet, to: o.owner))
        }
    }

    /// Repeats asks that are due; restarts a proposal whose target turns out to have
    /// granted more than its cutoff (a member sent those grants instead of a vote).
    mutating func askForVotes(now: Instant, _ out: inout [Output]) {
        guard !proposals.isEmpty else { return }
        guard membersHoldQuorum() else {
            // Nothing to ask now; look again after the interval (a due time left in the past
            // would wake this node at once, again and again).
            for x in proposals.keys where now >= proposals[x]!.nextAskAt { proposals[x]!.nextAskAt = now + settings.reclaimAskInterval }
            return
        }
        for x in proposals.keys.sorted() where now >= proposals[x]!.nextAskAt {
            let p = proposals[x]!
            if let known = view.highestSeq(of: p.target), known > p.cutoff {
                proposals[x] = nil
                startProposal(holding: x, target: p.target, now: now, &out)
                continue
            }
            proposals[x]!.nextAskAt = now + settings.reclaimAskInterval
            sendAsks(holding: x, again: true, &out)
            // Weighed again too: votes that could not all be weighed when they came (a
            // voter's grants were missing) may be now, and every member may have voted.
            completeIfMajority(holding: x, &out)
        }
    }

    /// A successor asks for this node's vote.
    mutating func answerReclaimAsk(from successor: NodeID, holding x: Bytes32, cutoff: UInt64, now: Instant, _ out: inout [Output]) {
        guard let g = view.parentGrant(x) else { return }
        let target = g.grantee
        let after = g.kind == .lease ? settings.leaseTime : settings.reclaimTime
        guard isCaughtUp, target != me, successor != target, let since = absentSince[target], now - since >= after else { return }
        if let known = view.highestSeq(of: target), known > cutoff {
            // The successor has not seen all the target's grants: send them, it will ask again.
            let newer = (view.byGrantor[target]?.grants ?? []).filter { $0.seq > cutoff }.sorted { $0.seq < $1.seq }
            for batch in batches(newer) { out.append(.send(signed(.grants(batch)), to: successor)) }
            return
        }
        // One successor per holding, unless the one voted for is itself long gone.
        if let prior = votedFor[x], prior != successor {
            guard let priorGone = absentSince[prior], now - priorGone >= settings.reclaimTime else { return }
        }
        guard let vote = makeVote(holding: x, cutoff: cutoff, successor: successor) else { return }
        votedCutoff[x] = cutoff
        if votedFor[x] != successor {
            votedFor[x] = successor
            out.append(.persistVote(holding: x, successor: successor))
        }
        counters.votes += 1
        out.append(.send(signed(.reclaimVote(holding: x, cutoff: cutoff, vote: vote)), to: successor))
    }

    /// This node's vote, signed; nil if it holds nothing outside the reclaimed range (it
    /// would weigh nothing).
    mutating func makeVote(holding x: Bytes32, cutoff: UInt64, successor: NodeID) -> ReclaimVote? {
        guard let g = view.parentGrant(x) else { return nil }
        let mine = RangeSet(view.ownership().filter { $0.owner == me }.map(\.range)).subtracting(RingView.leftOutOfVotes(g))
        guard !mine.isEmpty else { return nil }
        return ReclaimVote(signer: me, seq: seq, signature: auth.sign(ReclaimVote.signedBytes(holding: x, cutoff: cutoff, successor: successor, seq: seq)))
    }

    /// A vote for one of this node's proposals. A vote whose seq is below the newest grant of
    /// its signer that this node knows is stale (or a lie that would count space the signer
    /// gave away before it voted) and is refused.
    mutating func takeReclaimVote(from: NodeID, holding x: Bytes32, cutoff: UInt64, vote: ReclaimVote, now: Instant, _ out: inout [Output]) {
        guard let p = proposals[x], p.cutoff == cutoff, vote.signer == from, p.votes[from] == nil,
              vote.seq >= view.highestSeq(of: from) ?? 0,
              auth.verify(signature: vote.signature, message: ReclaimVote.signedBytes(holding: x, cutoff: cutoff, successor: me, seq: vote.seq),
                          signer: from) else { return }
        proposals[x]!.votes[from] = vote
        completeIfMajority(holding: x, &out)
    }

    /// Once the voters held a quorum when they voted (RingView.voteWeight), signs the
    /// reclaim with the votes, records, persists and pushes it. Votes go in largest holder
    /// first until the quorum, then a quarter more as a margin (for a view that cannot
    /// weigh one voter yet), within one datagram.
    mutating func completeIfMajority(holding x: Bytes32, _ out: inout [Output]) {
        guard var p = proposals[x], let parent = view.parentGrant(x) else { return }
        // This node's own vote, renewed at its current seq if it signed since (other reclaims
        // of a wave): weighing it then needs no rewound fold, and it counts what it holds now.
        if let mine = p.votes[me], mine.seq < seq, let v = makeVote(holding: x, cutoff: p.cutoff, successor: me) {
            p.votes[me] = v
            proposals[x] = p
        }
        let exclude = RingView.leftOutOfVotes(parent)
        // One rewound fold weighs every vote received (not one per vote: a reclaim in a
        // mesh of hundreds gathers hundreds of votes, each arrival calling this).
        // Votes are weighed only once this view holds each voter's grants up to its vote.
        // Those it lacks are fetched from the voter (a digest exchange, at most once per ask
        // interval), and the others are weighed meanwhile: one voter whose history is held
        // back (a member over its grant limit) does not stall the reclaim.
        let weighable = p.votes.values.filter { $0.seq == 0 || (view.byGrantor[$0.signer]?.contiguousSeq ?? 0) >= $0.seq }
        if weighable.count < p.votes.count, lastNow >= p.nextPullAt,
           let lacking = p.votes.values.filter({ v in !weighable.contains { $0.signer == v.signer } }).map(\.signer).min() {
            proposals[x]!.nextPullAt = lastNow + settings.reclaimAskInterval
            sendDigest(to: lacking, reply: false, &out)
        }
        // One rewound fold weighs every vote (not one per vote: a reclaim in a mesh of
        // hundreds gathers hundreds of votes, each arrival calling this).
        guard case .success(let holdings) = view.voteHoldings(weighable) else { return }
        var held: [NodeID: RangeSet] = [:]
        for (id, r) in holdings { held[id] = r.subtracting(exclude) }
        let ranked = weighable.sorted { (held[$0.signer]?.count ?? 0, $1.signer) > (held[$1.signer]?.count ?? 0, $0.signer) }
        var chosen: [ReclaimVote] = []
        var union = RangeSet()
        var quorumAt: Int?
        for v in ranked where held[v.signer]?.isEmpty == false {
            if let q = quorumAt, chosen.count >= q + (q + 3) / 4 { break }
            guard chosen.count < ReclaimVote.limit else { break }
            chosen.append(v)
            if quorumAt == nil {
                union = union.union(held[v.signer]!)
                if RingView.isQuorum(union, of: view.pool) { quorumAt = chosen.count }
            }
        }
        // The votes chosen, weighed as every node will weigh them.
        guard quorumAt != nil, case .weight(let w) = view.voteWeight(chosen), RingView.isQuorum(w.subtracting(exclude), of: view.pool) else { return }
        proposals[x] = nil
        publishReclaim(of: parent, parentRef: x, cutoff: p.cutoff, votes: chosen, forced: false, &out)
    }

    @discardableResult
    mutating func publishReclaim(of parent: Grant, parentRef: Bytes32, cutoff: UInt64, votes: [ReclaimVote], forced: Bool,
                                 _ out: inout [Output]) -> Bool {
        let reported = reportedRange(of: parent, ref: parentRef)
        guard let r = signNext(Grant(grantor: me, seq: 0, parent: parentRef, range: parent.range, grantee: me, kind: .reclaim,
                                     cutoff: cutoff, forced: forced, votes: votes)) else { return false }
        out.append(.persist(grants: [r], seq: seq))
        counters.reclaims += 1
        out.append(.event(.reclaimed(from: parent.grantee, range: reported, forced: forced)))
        push([r], &out)
        return true
    }

    /// The range a reclaim of `parent` is reported with: its range, or for a merge (whose
    /// range is the whole pool) the span of what it holds.
    mutating func reportedRange(of parent: Grant, ref: Bytes32) -> AddressRange {
        guard parent.kind == .merge else { return parent.range }
        let held = view.ownership().filter { $0.grant == ref }.map(\.range)
        guard let lo = held.first, let hi = held.last else { return parent.range }
        return AddressRange(lo.first, hi.last)
    }

    /// What the admin key must sign for `meshwork pool reclaim NODE --force`: each holding
    /// of `target` in this view with its cutoff (the authorisation names this node as successor).
    public mutating func forceReclaimPlan(_ target: NodeID) -> Result<[ForcedHolding], ForceReclaimError> {
        guard target != me else { return .failure(.ownNode) }
        guard isCaughtUp else { return .failure(.catchingUp) }
        guard !isMember(target) else { return .failure(.alive) }
        guard view.admin != nil else { return .failure(.noAdminKey) }
        var plan: [ForcedHolding] = []
        var seen = Set<Bytes32>()
        let cutoff = view.highestSeq(of: target) ?? 0
        for o in view.ownership() where o.owner == target && seen.insert(o.grant).inserted && view.parentGrant(o.grant) != nil {
            plan.append(ForcedHolding(holding: o.grant, cutoff: cutoff, successor: me))
        }
        return plan.isEmpty ? .failure(.holdsNothing) : .success(plan)
    }

    /// `meshwork pool reclaim NODE --force`: takes what `target` holds, now, without votes,
    /// on the strength of the admin key's signature over each holding of the plan
    /// (`forceReclaimPlan`). Unsafe while `target` might be alive (its grantees and this
    /// node's would then hold the same addresses until the reclaim reaches them); refused
    /// while membership says it is alive. Returns the ranges taken.
    public mutating func forceReclaim(_ target: NodeID, authorizations: [ForcedHolding: ReclaimVote],
                                      now: Instant) -> Result<([AddressRange], [Output]), ForceReclaimError> {
        lastNow = now
        let plan: [ForcedHolding]
        switch forceReclaimPlan(target) {
        case .success(let p): plan = p
        case .failure(let e): return .failure(e)
        }
        var out: [Output] = []
        var taken: [AddressRange] = []
        for h in plan {
            guard let parent = view.parentGrant(h.holding), let auth = authorizations[h] else { continue }
            let reported = reportedRange(of: parent, ref: h.holding)
            if publishReclaim(of: parent, parentRef: h.holding, cutoff: h.cutoff, votes: [auth], forced: true, &out) {
                taken.append(reported)
            }
        }
        guard !taken.isEmpty else { return .failure(.notAuthorized) }
        flush(&out)
        return .success((taken, out))
    }
}

/// One holding a forced reclaim takes, and what the admin key signs for it.
public struct ForcedHolding: Hashable, Sendable {
    public var holding: Bytes32
    public var cutoff: UInt64
    public var successor: NodeID

    public init(holding: Bytes32, cutoff: UInt64, successor: NodeID) {
        self.holding = holding
        self.cutoff = cutoff
        self.successor = successor
    }

    /// The bytes the admin key signs (those of a vote that claims nothing).
    public var signedBytes: [UInt8] { ReclaimVote.signedBytes(holding: holding, cutoff: cutoff, successor: successor, seq: 0) }

    /// The admin key's authorisation, made with the admin key where the operator keeps it.
    public func authorize(with admin: some RecordAuthenticator, adminID: NodeID) -> ReclaimVote {
        ReclaimVote(signer: adminID, signature: admin.sign(signedBytes))
    }
}
