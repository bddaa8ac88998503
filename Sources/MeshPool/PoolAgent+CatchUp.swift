import MeshCore

/// Catching up after a restart or a suspend (docs/pool.md, "Lost or old state").
///
/// A node's own history is the mesh's, not its disk's. A node that starts again (its
/// `pool.json` may be current, moved aside, or restored from last week's backup), whose
/// clock jumped by more than a quarter of the reclaim or lease time (a laptop that slept),
/// or whose fence lifts after half the reclaim time grants nothing, votes for nothing and
/// gives nothing away until it has caught up: it asks the live members for their digests,
/// and counts a member once its digest has come and this view holds at least as many
/// grants of every grantor as that digest listed (`syncedPeers`). Caught up means that the
/// counted members (one at least holding space) and this node hold a quorum of the pool,
/// as the view then folds it, and that every alive member has been counted or three asks
/// have passed. Meanwhile every digest raises this node's grant counter above the highest
/// of its own grants that the member knows, so no seq is ever signed twice for two grants
/// the mesh holds.
extension PoolAgent {
    /// Per member heard from, the entries of its digest for which this view held fewer
    /// grants than it listed (when heard, or when last checked), and the checkpoint the view
    /// was on then. Between moves onto a checkpoint a view's grant counts only grow, so a
    /// member is synced once those entries are held, and only they need checking again;
    /// after a move all are counted again. (Checking every entry of every member at every
    /// digest page cost O(members × grantors) each: after the heal of a 300-node
    /// partition, every node catching up at once spent 75% of the run in `syncedPeers`.)
    struct DigestGaps: Sendable {
        var lacking: [NodeID: [UInt64: UInt32]] = [:]
        var base: Bytes32?
        var valid = false
        /// Grantor by digest key, for the grantors of this view (`grantor(forKey:)`).
        var grantorOf: [UInt64: NodeID] = [:]
        var indexed = 0
    }

    /// The grantor this view knows under a digest key (nil: none of its grants is held).
    mutating func grantor(forKey key: UInt64) -> NodeID? {
        if let g = gaps.grantorOf[key] { return g }
        // A grantor new to this view since the index was built: index again.
        guard gaps.indexed != view.byGrantor.count else { return nil }
        gaps.indexed = view.byGrantor.count
        for id in view.byGrantor.keys { gaps.grantorOf[id.digestKey] = id }
        return gaps.grantorOf[key]
    }

    /// Grants this view holds of the grantor under a digest key, as digests count them
    /// (attached ones).
    mutating func held(forKey key: UInt64) -> UInt32 {
        guard let g = grantor(forKey: key) else { return 0 }
        return view.byGrantor[g]?.attachedCount ?? 0
    }

    /// Records a member's digest entries (`heardFrom`) and which of them this view lacks.
    mutating func noteHeard(_ peer: NodeID, _ entries: [GrantorDigest]) {
        refreshGaps()
        var theirs = heardFrom.removeValue(forKey: peer) ?? [:]
        var lacks = gaps.lacking.removeValue(forKey: peer) ?? [:]
        for e in entries {
            theirs[e.key] = e.count
            lacks[e.key] = held(forKey: e.key) < e.count ? e.count : nil
        }
        heardFrom[peer] = theirs
        if !lacks.isEmpty { gaps.lacking[peer] = lacks }
    }

    /// Counts again if the view moved onto another checkpoint since (or nothing was counted).
    mutating func refreshGaps() {
        if !gaps.valid || gaps.base != view.base?.ref { recountGaps() }
    }

    /// Counts every member's entries against this view again (after a checkpoint move).
    mutating func recountGaps() {
        // Another view: its grantors are indexed again at the first miss (and those of the
        // old one forgotten, or the index would grow with every grantor the mesh ever had).
        gaps.grantorOf = [:]
        gaps.indexed = -1
        gaps.lacking = [:]
        gaps.base = view.base?.ref
        gaps.valid = true
        for (peer, theirs) in heardFrom {
            var lacks: [UInt64: UInt32] = [:]
            for (key, count) in theirs where held(forKey: key) < count { lacks[key] = count }
            if !lacks.isEmpty { gaps.lacking[peer] = lacks }
        }
    }

    /// Forgets who was heard from.
    mutating func forgetHeard() {
        heardFrom = [:]
        gaps.lacking = [:]
        gaps.valid = false
    }

    /// Whether this node may grant: caught up, and not fenced.
    public mutating func mayGrant(now: Instant) -> Bool {
        let fenced = isFenced(now: now)  // first: lifting a long fence starts a catch-up
        return isCaughtUp && !fenced && !leaving
    }

    /// Starts (again) to catch up: forget who was heard, and ask the members soon.
    mutating func beginCatchUp(now: Instant) {
        isCaughtUp = false
        catchUpSince = now
        forgetHeard()
        lastQuorumAt = nil
        nextCatchUpAskAt = now
    }

    /// Asks the live members that have not confirmed this view yet for their digests (up
    /// to 16 at a time); one whose digest showed grants this view lacks is asked again, so
    /// that what could not be taken in at first (a reclaim whose voters were not known
    /// yet) comes again.
    mutating func askToCatchUp(now: Instant, limit: Int = 16, _ out: inout [Output]) {
        nextCatchUpAskAt = now + settings.catchUpInterval
        let synced = syncedPeers()
        var pending = members.filter { !synced.contains($0) }
        var asked = 0
        while asked < limit, !pending.isEmpty {
            let t = pending.remove(at: Int(rng.next() % UInt64(pending.count)))
            // Asked before and still not heard from: perhaps out of direct reach.
            sendDigest(to: t, reply: false, resend: catchUpAsked.contains(t), &out)
            catchUpAsked.insert(t)
            asked += 1
        }
    }

    /// A member's digest page arrived: raise this node's grant counter above the highest
    /// of its own grants the member holds, and (catching up) note what the member holds.
    mutating func heardDigest(from peer: NodeID, lo: UInt64, hi: UInt64, entries: [GrantorDigest], now: Instant, _ out: inout [Output]) {
        let key = me.digestKey
        if (lo...hi).contains(key), let theirs = entries.first(where: { $0.key == key })?.maxSeq, theirs > seq {
            // Raised at once, and durable before anything is signed with the next one.
            seq = theirs
            out.append(.persist(grants: [], seq: seq))
        }
        // Noted while catching up, and while releasing (`releaseViewIsCurrent`).
        guard !isCaughtUp || releaseAt != nil else { return }
        noteHeard(peer, entries)
        rollCall?.answered.insert(peer)
        if !isCaughtUp { checkCaughtUp(now: now, &out) }
    }

    /// Caught up once the members heard (whose grants of this node's this view holds) and
    /// this node hold a quorum.
    mutating func checkCaughtUp(now: Instant, _ out: inout [Output]) {
        guard !isCaughtUp, view.hasGenesis else { return }
        // Called at every packet while catching up (hundreds a second after a heal): the
        // cheap tests first, and the weight from the per-owner totals, not the stretches.
        // Someone holding part of the pool must have confirmed this node's view (a joiner
        // that knows nothing confirms nothing), unless this node has been alone (no member
        // known) for half the reclaim time: then it trusts its disk (docs/pool.md).
        let alone = members.isEmpty && now - catchUpSince >= settings.reclaimTime * 0.5
        let heard = syncedPeers()
        // Every member membership says is alive must have confirmed this view: this node's
        // own newest grants may have reached only their grantees and a few others, and a
        // quorum of members that lack them would let this node sign those seqs again.
        // A member that never confirms (its digest lists what this view cannot take in) holds
        // it back for three asks at most: then a quorum suffices.
        if !alone, now - catchUpSince < settings.catchUpInterval * 3 {
            guard heard.count + suspected.count >= members.count,
                  members.allSatisfy({ heard.contains($0) || suspected.contains($0) }) else { return }
        }
        let byOwner = view.heldByOwner()
        var others: UInt64 = 0
        for id in heard where id != me { others += byOwner[id] ?? 0 }
        guard others > 0 || alone else { return }
        let weight = others + (byOwner[me] ?? 0)
        let anchor = view.ownership().first.map { $0.range.contains(view.pool.first) && ($0.owner == me || heard.contains($0.owner)) } ?? false
        guard RingView.isQuorum(weight: weight, holdsAnchor: anchor, of: view.pool) else { return }
        isCaughtUp = true
        if releaseAt == nil { forgetHeard() }  // a releasing node still needs them (`heirs`)
        counters.catchUps += 1
        scheduleBalance()
        // A releasing node that waited for this to give its space away gives it now.
        giveAwayIfDue(now: now, &out)
        // A node that waited for this to take an address (or take its own back) does it now.
        if address == nil, case .exhausted = phase { ensureAddress(now: now, &out) }
    }

    /// The members heard from whose grants this view holds: at least as many grants of every
    /// grantor as the member's digest said it holds (what it sent has arrived and been taken in).
    mutating func syncedPeers() -> Set<NodeID> {
        refreshGaps()  // after a checkpoint move every entry is counted again; else only those lacking
        var synced = Set<NodeID>()
        for peer in heardFrom.keys {
            guard var lacks = gaps.lacking[peer] else { synced.insert(peer); continue }
            for (key, count) in lacks where held(forKey: key) >= count { lacks[key] = nil }
            if lacks.isEmpty { gaps.lacking[peer] = nil; synced.insert(peer) } else { gaps.lacking[peer] = lacks }
        }
        return synced
    }

    /// Called on every tick: a clock that jumped by more than a quarter of the reclaim
    /// time means the node was suspended; others may have reclaimed from it meanwhile.
    mutating func noticeClockJump(now: Instant, _ out: inout [Output]) {
        defer { lastTickAt = now }
        guard let last = lastTickAt, now - last > Swift.min(settings.reclaimTime, settings.leaseTime) * 0.25 else { return }
        counters.resumes += 1
        beginCatchUp(now: now)
        // Asleep longer than half the lease time: the lease may be gone; stop using it until
        // the mesh says (sticky if it is still this node's).
        if case .bound(let a) = phase, now - last >= settings.leaseTime * 0.5 { expireOwnLease(a, &out) }
    }
}
