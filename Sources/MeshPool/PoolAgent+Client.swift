import MeshCore

/// The commands a node gives its pool agent (take an address, release it) and the client
/// side of DISCOVER/OFFER/REQUEST/ACK (PoolAgent.swift says how it runs).
extension PoolAgent {
    // MARK: - Commands

    /// Creates the genesis grant (only the token's genesis node, once).
    public mutating func createGenesis() -> [Output] {
        // Only on this node's first start: a genesis that lost its pool.json learns the
        // mesh's grants from the members instead of founding the pool a second time.
        guard view.genesis == me, !view.hasGenesis, isCaughtUp else { return [] }
        var g = Grant(grantor: me, seq: 0, parent: .zero, range: view.pool, grantee: me, kind: .space)
        g.sign(with: auth)
        view.insert(g)
        var out: [Output] = [.persist(grants: [g], seq: seq)]
        push([g], &out)
        return out
    }

    /// Membership changed: a node still without an address that is backing off tries
    /// again now, from the start of its backoff (new members may have space).
    public mutating func retryNow(now: Instant) -> [Output] {
        guard address == nil, case .exhausted = phase else { return [] }
        attempt = 0
        return acquire(now: now)
    }

    /// Acquires an address unless the node has one: sticky if the view holds a lease for
    /// it; from its own space if it owns some; otherwise by DISCOVER.
    public mutating func acquire(now: Instant) -> [Output] {
        lastNow = now
        var out: [Output] = []
        ensureAddress(now: now, &out)
        return out
    }

    mutating func ensureAddress(now: Instant, _ out: inout [Output]) {
        if leaseSuspended {
            guard mayGrant(now: now) else {
                phase = .exhausted(retryAt: now + settings.backoffBase * 5)
                return
            }
            leaseSuspended = false
        }
        if let lease = view.leases(of: me).first {
            bind(lease.range.first, &out)
            return
        }
        if case .bound = phase { phase = .idle }
        if !isCaughtUp { checkCaughtUp(now: now, &out) }
        if mayGrant(now: now), let own = pickFromOwnSpace() {
            let made = commit(lease: own, share: nil, to: me, now: now, &out)
            push(made, &out)
            bind(own, &out)
            return
        }
        startDiscover(now: now, &out)
    }

    mutating func bind(_ address: UInt32, _ out: inout [Output]) {
        waitingReason = nil
        boundBy = view.leases(of: me).first { $0.range.first == address }.flatMap { view.parentGrant($0.grant)?.grantor }
        if phase != .bound(address: address) {
            phase = .bound(address: address)
            attempt = 0
            out.append(.event(.leased(address)))
        }
    }

    /// RELEASE, for a node leaving for good, in two steps. Now: the node stops using its
    /// address and becomes `leaving` (it grants nothing more), while membership tells the
    /// others it is going. `settings.releaseDelay` later, once its view holds all it was
    /// given (`releaseViewIsCurrent`; at most 3/4 of `releaseWaitMax`): every stretch it
    /// holds (its free space and its own lease) is granted, as space, to the nearest heir
    /// (`heirs`) owning a stretch below it (else above it), persisted and pushed; then it gives
    /// on at once whatever still comes to it (a donation or a leaver's stretch signed before
    /// its departure was known). The shell keeps the node running while `releasePending`
    /// (at most `settings.releaseWaitMax`), then a second more.
    /// Given away at once instead, a leaver's stretches went to heirs leaving at the same
    /// moment, and donors' gifts to it after it stopped: space that only a reclaim brings
    /// back (`sim pool --nodes 40 --cycles 600`: stopped nodes held 38% of the pool at
    /// 230 s, and every node fenced soon after; docs/pool.md, "Leaving for good").
    public mutating func release(now: Instant) -> [Output] {
        lastNow = now
        leaving = true
        releaseAt = now + settings.releaseDelay
        releaseSince = now
        var out: [Output] = []
        // What it gives must be all it holds: a grant to it that it never took in (its
        // parent inside a checkpoint it has not moved onto, most often in a node that joined
        // a moment ago) stays with it when it stops. So it asks every member at once for its
        // digest (with its checkpoint number: a member on a newer one sends it), and gives
        // once its view is current (`releaseViewIsCurrent`).
        forgetHeard()
        checkpointsHeard = [:]
        rollCall = nil
        if !members.isEmpty { askToCatchUp(now: now, limit: members.count, &out) }
        if let a = address { out.append(.event(.released(a))) }
        phase = .idle
        return out
    }

    /// The second step of a RELEASE, once its time has come (the caller knows this node
    /// is caught up) and its view is current, or the wait for that is over.
    mutating func giveAwayIfDue(now: Instant, _ out: inout [Output]) {
        guard let r = releaseAt, now >= r else { return }
        let giveBy = (releaseSince ?? now) + settings.releaseWaitMax * 0.75
        let current = releaseViewIsCurrent()
        guard now >= giveBy || current else {
            // Asks again those not heard from, and looks again soon.
            if now >= nextCatchUpAskAt, !members.isEmpty { askToCatchUp(now: now, limit: members.count, &out) }
            releaseAt = min(giveBy, now + settings.releaseDelay * 0.25)
            return
        }
        if !current, rollCall == nil, !members.isEmpty {
            // The wait ran out: a last roll call first. Members that answered its first ask
            // seconds ago may have left since (a leaver hears of no departure after its own),
            // and one that stopped would hold what it inherits until the reclaim time (seen
            // with `sim pool --nodes 16 --cycles 400 --explain-stopped`).
            rollCall = RollCall(answered: [])
            for m in members { sendDigest(to: m, reply: false, &out) }
            releaseAt = now + settings.releaseDelay * 0.5
            return
        }
        releaseAt = nil
        if current { counters.releasesCurrent += 1 } else { counters.releasesOnTimeout += 1 }
        giveAway(&out)
    }

    /// Whether a leaving node's view holds all it was given: it is on the newest checkpoint
    /// a member named since it released, some member on that checkpoint answered its ask,
    /// and this view holds what every such answer listed (a grant that waits for its
    /// parent is not held). Not every member: those that left since this node did never
    /// answer (and nobody tells a leaver of them), and a digest counts the grants held since
    /// its sender's checkpoint, so one from a member on an older one cannot be compared.
    mutating func releaseViewIsCurrent() -> Bool {
        guard checkpointsHeard.values.allSatisfy({ $0 <= checkpointNumber }) else { return false }
        let same = heardFrom.keys.filter { checkpointsHeard[$0] == checkpointNumber }
        guard members.isEmpty || !same.isEmpty else { return false }
        let synced = syncedPeers()
        return same.allSatisfy { synced.contains($0) }
    }

    /// Who may inherit a leaver's stretches: live members that answered its ask since it
    /// released (they ran a moment ago, and one leaving since gives on what comes before it
    /// stops), or every live member if none did. A leaver learns of no departure after its
    /// own (the others no longer gossip to it), so its member list alone goes stale.
    var heirs: Set<NodeID> {
        // Those that answered the last roll call, if there was one and any did.
        if let called = rollCall?.answered, !called.isEmpty, !liveMembers.isDisjoint(with: called) {
            return liveMembers.intersection(called)
        }
        let answered = liveMembers.intersection(heardFrom.keys)
        return answered.isEmpty ? liveMembers : answered
    }

    /// A leaver's last call for answers before it gives on a view not known to be current
    /// (`giveAwayIfDue`): who answered since.
    struct RollCall: Sendable {
        var answered: Set<NodeID>
    }

    /// A leaving node's stretches to live heirs (`release`).
    mutating func giveAway(_ out: inout [Output]) {
        // Not caught up: its view may be old, and what it signed could repeat a seq.
        // Its space is reclaimed after the reclaim time instead.
        guard isCaughtUp else { return }
        let all = view.ownership()
        // Heirs are live members: a neighbour that has left (or is leaving, or suspected)
        // would hold the space until the reclaim time, and under churn such space adds up
        // until the live members no longer hold a quorum and every node fences.
        let live = heirs
        var made: [Grant] = []
        for (i, o) in all.enumerated() where o.owner == me {
            let below = all[..<i].last { live.contains($0.owner) }?.owner
            let above = all[(i + 1)...].first { live.contains($0.owner) }?.owner
            guard let heir = below ?? above else { continue }  // no live member: nobody to give it to
            if let g = signNext(Grant(grantor: me, seq: 0, parent: o.grant, range: o.range, grantee: heir, kind: .space)) { made.append(g) }
        }
        if !made.isEmpty {
            out.append(.persist(grants: made, seq: seq))
            // Straight to each heir as well: one leaving too gives it on before it stops
            // (pushes alone may reach it only after).
            for heir in Set(made.map(\.grantee)).sorted() { sendChains(of: made.filter { $0.grantee == heir }, to: heir, &out) }
            push(made, &out)
            flush(&out)  // the node stops right after: nothing may wait
        }
    }

    // MARK: - Client

    mutating func startDiscover(now: Instant, _ out: inout [Output]) {
        // Nobody to ask yet (a join under way): no DISCOVER into the void and no backoff
        // for it. The first member to appear starts discovery at once (`retryNow`).
        if members.isEmpty {
            warmUntil = nil
            phase = .exhausted(retryAt: now + settings.backoffBase * 5)
            waitingReason = "no other member known yet: waiting to join the mesh"
            return
        }
        // Blind (no grants known yet): fetch a member's view first, then discover.
        if !view.hasGenesis, warmUntil == nil, !members.isEmpty {
            warmUntil = now + settings.warmUp
            phase = .idle
            sendDigest(to: members[Int(rng.next() % UInt64(members.count))], reply: false, &out)
            return
        }
        warmUntil = nil
        xid &+= 1
        offers = []
        offersUntil = .distantFuture
        deadline = now + settings.requestTimeout
        naksNoSpace = 0
        naksFenced = 0
        phase = .discovering(xid: xid, attempt: attempt)
        let requested = preferred ?? Self.derivedAddress(for: me, pool: view.pool)
        let targets = discoverTargets()
        asked = Set(targets)
        for t in targets {
            counters.discovers += 1
            let p = signed(.discover(xid: xid, requested: requested))
            out.append(attempt > 0 ? .resend(p, to: t) : .send(p, to: t))
        }
    }

    /// Up to `discoverTargets` live members, weighted by free space owned (any if none known).
    mutating func discoverTargets() -> [NodeID] {
        let live = Set(members)
        var weights: [NodeID: UInt64] = [:]
        for o in view.ownership() where o.kind == .space && live.contains(o.owner) { weights[o.owner, default: 0] += o.range.count }
        var candidates = weights.sorted { $0.key < $1.key }
        var picked: [NodeID] = []
        while picked.count < settings.discoverTargets, !candidates.isEmpty {
            let total = candidates.reduce(0) { $0 + $1.value }
            var r = rng.next() % max(total, 1)
            var i = 0
            while i < candidates.count - 1, r >= candidates[i].value {
                r -= candidates[i].value
                i += 1
            }
            picked.append(candidates.remove(at: i).key)
        }
        if picked.isEmpty {
            var pool = members
            while picked.count < settings.discoverTargets, !pool.isEmpty {
                picked.append(pool.remove(at: Int(rng.next() % UInt64(pool.count))))
            }
        }
        return picked
    }

    mutating func chooseOffer(now: Instant, _ out: inout [Output]) {
        guard case .discovering(let x, _) = phase, !offers.isEmpty else { return }
        let requested = preferred ?? Self.derivedAddress(for: me, pool: view.pool)
        let best = offers.first { $0.address == requested } ?? offers.max { ($0.share?.count ?? 0, $0.from) < ($1.share?.count ?? 0, $1.from) }!
        phase = .requesting(xid: x, offerer: best.from, address: best.address)
        deadline = now + settings.requestTimeout
        requestTry = 1
        counters.requests += 1
        out.append(.send(signed(.request(xid: x, address: best.address)), to: best.from))
    }

    mutating func retryLater(now: Instant, exhausted: Bool, refused: Bool = false, fenced: Bool = false, _ out: inout [Output]) {
        attempt += 1
        let exp = min(Double(1 << min(attempt, 16)), settings.backoffMax.seconds / settings.backoffBase.seconds)
        let jitter = 0.5 + Double(rng.next() % 1000) / 1000
        let retryAt = now + settings.backoffBase * (exp * jitter)
        phase = .exhausted(retryAt: retryAt)
        waitingReason = fenced ? "the members asked are fenced (cut off from members holding most of the pool); asking again"
            : exhausted ? "pool exhausted: no member asked has free space"
            : refused ? "the offer was withdrawn (taken or expired); asking again" : "no answer from the members asked"
        if exhausted { out.append(.event(.exhausted)) }
    }
}
