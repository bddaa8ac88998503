import MeshCore

/// Reclaim and the fence (docs/pool.md, "Reclaim").
///
/// A node that owns space and that membership says is gone (dead or left) for longer than
/// the reclaim time T has each of its holdings taken over by a *successor*: the live owner
/// of the next stretch of the pool after it. The successor asks every live owner for a
/// signed vote; once the votes' holders hold more than half the pool (outside the reclaimed
/// range) it signs a `reclaim` grant carrying them, which every node checks by itself.
/// A node that has not seen live members (itself included) holding more than half the
/// pool for T/2 stops granting: so a node on the minority side of a partition stops before
/// the majority side can reclaim its space, and space never grows on the minority side
/// (joins split space, they do not add to it), so only one side can ever have a majority.
extension PoolAgent {
    struct Proposal: Sendable {
        var target: NodeID
        var cutoff: UInt64
        var votes: [NodeID: ReclaimVote] = [:]
        /// The sum of the votes' claimed addresses (an upper bound of their union).
        var claimedSum: UInt64 = 0
        var nextAskAt: Instant
    }

    public enum ForceReclaimError: Error, Equatable, Sendable {
        case ownNode
        case alive
        case holdsNothing
    }

    /// Whether this node must not grant now: it has not seen live members (itself
    /// included) holding more than half the pool within half the reclaim time.
    public mutating func isFenced(now: Instant) -> Bool {
        if let q = lastQuorumAt, now - q <= settings.reclaimTime * 0.5 { return false }
        if hasQuorum() {
            lastQuorumAt = now
            return false
        }
        return true
    }

    /// Addresses (space and leases) held by this node and the live members, by this view.
    public mutating func liveWeight() -> UInt64 {
        var w: UInt64 = 0
        for o in view.ownership() where o.owner == me || isMember(o.owner) { w += o.range.count }
        return w
    }

    mutating func hasQuorum() -> Bool { view.hasGenesis && RingView.isMajority(liveWeight(), of: view.pool) }

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
        let stillStarting = fencedReported == nil && now - startedAt < settings.reclaimTime * 0.5
        if fenced != fencedReported, !(fenced && stillStarting) {
            fencedReported = fenced
            out.append(.event(.fenced(fenced)))
        }
        // Proposals whose target came back, or whose holding it no longer holds, are dropped.
        let held = Set(own.map { HeldBy(grant: $0.grant, owner: $0.owner) })
        proposals = proposals.filter { x, p in absentSince[p.target] != nil && held.contains(HeldBy(grant: x, owner: p.target)) }
        var considered = Set<Bytes32>()
        for (i, o) in own.enumerated() {
            guard let since = absentSince[o.owner], now - since >= settings.reclaimTime, proposals[o.grant] == nil,
                  considered.insert(o.grant).inserted, successor(after: i, of: o.owner, in: own) == me else { continue }
            startProposal(holding: o.grant, target: o.owner, now: now, &out)
        }
    }

    struct HeldBy: Hashable {
        var grant: Bytes32
        var owner: NodeID
    }

    /// The live owner of the first stretch after the target's stretches that include
    /// stretch `i` (going round the pool), or nil.
    func successor(after i: Int, of target: NodeID, in own: [RingView.Ownership]) -> NodeID? {
        let holding = own[i].grant
        var last = i
        for (j, o) in own.enumerated() where o.grant == holding { last = j }
        for k in 1..<max(own.count, 2) {
            let o = own[(last + k) % own.count]
            if o.owner != target, o.owner == me || isMember(o.owner) { return o.owner }
        }
        return nil
    }

    mutating func startProposal(holding x: Bytes32, target: NodeID, now: Instant, _ out: inout [Output]) {
        var p = Proposal(target: target, cutoff: view.highestSeq(of: target) ?? 0, nextAskAt: now + settings.reclaimAskInterval)
        if votedFor[x] == nil || votedFor[x] == me, let v = makeVote(holding: x, cutoff: p.cutoff, successor: me) {
            if votedFor[x] != me {
                votedFor[x] = me
                out.append(.persistVote(holding: x, successor: me))
            }
            p.votes[me] = v
            counters.votes += 1  // votes signed here: the successor's own too
            p.claimedSum = claimedWeight(v, excluding: view.grants[x]?.range)
        }
        proposals[x] = p
        sendAsks(holding: x, &out)
        completeIfMajority(holding: x, &out)
    }

    /// Asks every live owner that has not voted yet.
    mutating func sendAsks(holding x: Bytes32, _ out: inout [Output]) {
        guard let p = proposals[x] else { return }
        var asked = Set<NodeID>()
        for o in view.ownership() where o.owner != me && o.owner != p.target && p.votes[o.owner] == nil && isMember(o.owner) {
            guard asked.insert(o.owner).inserted else { continue }
            out.append(.send(PoolPacket(sender: me, message: .reclaimAsk(holding: x, cutoff: p.cutoff)), to: o.owner))
        }
    }

    /// Repeats asks that are due; restarts a proposal whose target turns out to have
    /// granted more than its cutoff (a member sent those grants instead of a vote).
    mutating func askForVotes(now: Instant, _ out: inout [Output]) {
        for x in proposals.keys.sorted() where now >= proposals[x]!.nextAskAt {
            let p = proposals[x]!
            if let known = view.highestSeq(of: p.target), known > p.cutoff {
                proposals[x] = nil
                startProposal(holding: x, target: p.target, now: now, &out)
                continue
            }
            proposals[x]!.nextAskAt = now + settings.reclaimAskInterval
            sendAsks(holding: x, &out)
        }
    }

    /// A successor asks for this node's vote.
    mutating func answerReclaimAsk(from successor: NodeID, holding x: Bytes32, cutoff: UInt64, now: Instant, _ out: inout [Output]) {
        guard let g = view.grants[x] else { return }
        let target = g.grantee
        guard target != me, successor != target, let since = absentSince[target], now - since >= settings.reclaimTime else { return }
        if let known = view.highestSeq(of: target), known > cutoff {
            // The successor has not seen all the target's grants: send them, it will ask again.
            let newer = (view.byGrantor[target]?.grants ?? []).filter { $0.seq > cutoff }.sorted { $0.seq < $1.seq }
            for batch in batches(newer) { out.append(.send(PoolPacket(sender: me, message: .grants(batch)), to: successor)) }
            return
        }
        // One successor per holding, unless the one voted for is itself long gone.
        if let prior = votedFor[x], prior != successor {
            guard let priorGone = absentSince[prior], now - priorGone >= settings.reclaimTime else { return }
        }
        guard let vote = makeVote(holding: x, cutoff: cutoff, successor: successor) else { return }
        if votedFor[x] != successor {
            votedFor[x] = successor
            out.append(.persistVote(holding: x, successor: successor))
        }
        counters.votes += 1
        out.append(.send(PoolPacket(sender: me, message: .reclaimVote(holding: x, cutoff: cutoff, vote: vote)), to: successor))
    }

    /// This node's vote: what it holds (outside the reclaimed range), signed.
    mutating func makeVote(holding x: Bytes32, cutoff: UInt64, successor: NodeID) -> ReclaimVote? {
        guard let g = view.grants[x] else { return nil }
        var mine = RangeSet(view.ownership().filter { $0.owner == me }.map(\.range)).subtracting(RangeSet(g.range)).ranges
        guard !mine.isEmpty else { return nil }
        if mine.count > ReclaimVote.claimedLimit {
            mine = Array(mine.sorted { $0.count > $1.count }.prefix(ReclaimVote.claimedLimit)).sorted()
        }
        var v = ReclaimVote(signer: me, claimed: mine)
        v.signature = auth.sign(ReclaimVote.signedBytes(holding: x, cutoff: cutoff, successor: successor, claimed: mine))
        return v
    }

    func claimedWeight(_ v: ReclaimVote, excluding r: AddressRange?) -> UInt64 {
        var s = RangeSet(v.claimed)
        if let r { s = s.subtracting(RangeSet(r)) }
        return s.count
    }

    mutating func takeReclaimVote(from: NodeID, holding x: Bytes32, cutoff: UInt64, vote: ReclaimVote, now: Instant, _ out: inout [Output]) {
        guard let p = proposals[x], p.cutoff == cutoff, vote.signer == from, p.votes[from] == nil, let g = view.grants[x],
              auth.verify(signature: vote.signature, message: ReclaimVote.signedBytes(holding: x, cutoff: cutoff, successor: me, claimed: vote.claimed),
                          signer: from) else { return }
        proposals[x]!.votes[from] = vote
        proposals[x]!.claimedSum += claimedWeight(vote, excluding: g.range)
        completeIfMajority(holding: x, &out)
    }

    /// Once the votes hold more than half the pool, signs the reclaim with as few votes as
    /// that takes (largest holders first), records, persists and pushes it.
    mutating func completeIfMajority(holding x: Bytes32, _ out: inout [Output]) {
        guard let p = proposals[x], let parent = view.grants[x], RingView.isMajority(p.claimedSum, of: view.pool) else { return }
        let exclude = RangeSet(parent.range)
        let ranked = p.votes.values.map { ($0, claimedWeight($0, excluding: parent.range)) }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0.signer < $1.0.signer }
        var union = RangeSet(), chosen: [ReclaimVote] = []
        for (v, _) in ranked {
            chosen.append(v)
            for r in v.claimed { union.insert(r) }
            if RingView.isMajority(union.subtracting(exclude).count, of: view.pool) { break }
        }
        guard RingView.isMajority(union.subtracting(exclude).count, of: view.pool), chosen.count <= ReclaimVote.limit else { return }
        proposals[x] = nil
        publishReclaim(of: parent, parentRef: x, cutoff: p.cutoff, votes: chosen, forced: false, &out)
    }

    @discardableResult
    mutating func publishReclaim(of parent: Grant, parentRef: Bytes32, cutoff: UInt64, votes: [ReclaimVote], forced: Bool,
                                 _ out: inout [Output]) -> Bool {
        seq += 1
        var r = Grant(grantor: me, seq: seq, parent: parentRef, range: parent.range, grantee: me, kind: .reclaim,
                      cutoff: cutoff, forced: forced, votes: votes)
        r.sign(with: auth)
        out.append(.persist(grants: [r], seq: seq))
        guard view.insert(r) == .added else { return false }
        counters.reclaims += 1
        out.append(.event(.reclaimed(from: parent.grantee, range: parent.range, forced: forced)))
        push([r], &out)
        return true
    }

    /// `meshwork pool reclaim NODE --force`: takes everything `target` holds, now, without
    /// votes. Unsafe while `target` might be alive (its grantees and this node's would then
    /// hold the same addresses until the reclaim reaches them); refused while membership
    /// says it is alive. Returns the ranges taken.
    public mutating func forceReclaim(_ target: NodeID, now: Instant) -> Result<([AddressRange], [Output]), ForceReclaimError> {
        lastNow = now
        guard target != me else { return .failure(.ownNode) }
        guard !isMember(target) else { return .failure(.alive) }
        var out: [Output] = []
        var taken: [AddressRange] = []
        var seen = Set<Bytes32>()
        for o in view.ownership() where o.owner == target && seen.insert(o.grant).inserted {
            guard let parent = view.grants[o.grant] else { continue }
            if publishReclaim(of: parent, parentRef: o.grant, cutoff: view.highestSeq(of: target) ?? 0, votes: [], forced: true, &out) {
                taken.append(parent.range)
            }
        }
        guard !taken.isEmpty else { return .failure(.holdsNothing) }
        flush(&out)
        return .success((taken, out))
    }
}
