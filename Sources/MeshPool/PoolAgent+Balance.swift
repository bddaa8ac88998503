import MeshCore

/// Balanced ownership (docs/pool.md, "Balance").
///
/// The quorum that reclaims and fences is weighted by pool share, and share is conserved
/// across any split, so at most one side of a partition holds a majority. Liveness then
/// needs balance: if no member holds much more than its fair share (what the live members
/// hold, divided by how many they are), the death of any minority leaves a live majority.
///
/// So, as Weave Net's peers donate space but with every move a signed grant: a node that
/// holds more than its fair share gives the excess, as space grants from its free ranges,
/// to the members below it. Every node ranks the live members the same way from the same
/// view (donors by holding, largest first; takers smallest first), and the k-th of D
/// donors gives to takers k, k + D, …, so donors rarely pile onto one taker; what
/// overshoots is given on in a later round. A round runs shortly after membership or the
/// view changes, and on a slow timer besides. A node that may not grant (fenced, or
/// catching up) gives nothing.
extension PoolAgent {
    /// Whatever changed who holds what, or who is alive: balance again soon.
    mutating func scheduleBalance() {
        let at = lastNow + settings.balanceDelay * (1 + Double(rng.next() % 1000) / 1000)
        if at < nextBalanceAt { nextBalanceAt = at }
    }

    /// Addresses held (space and leases) by each live member and by this node.
    mutating func liveHoldings() -> [NodeID: UInt64] {
        let held = view.heldByOwner()
        var by: [NodeID: UInt64] = [me: held[me] ?? 0]
        for id in members where !suspected.contains(id) { by[id] = held[id] ?? 0 }
        return by
    }

    /// The fair share among `n` holders of `total` addresses, and how far above it a holder
    /// may stay without a move: pool/n². Tight enough that any minority holds less than half
    /// when nobody exceeds fair + slack (k ≤ (n-1)/2 holders: k(1/n + 1/n²) = (n²-1)/2n² < ½).
    /// One join lowers the fair share by about pool/n², as much as the slack: members just
    /// above the old share then hold a small excess, which waits (`balance`), so that history
    /// grows with imbalance, not with joins.
    func fairShare(total: UInt64, holders n: Int) -> (fair: UInt64, slack: UInt64) {
        let n64 = UInt64(Swift.max(n, 1))
        return (total / n64, Swift.max(1, view.pool.count / (n64 * n64)))
    }

    /// One balancing round: if this node holds more than its fair share plus the slack, it
    /// gives the excess to the takers the ranking pairs it with.
    mutating func balance(now: Instant, _ out: inout [Output]) {
        nextBalanceAt = now + settings.balanceInterval
        guard view.hasGenesis, !members.isEmpty, mayGrant(now: now) else { excessSince = nil; return }
        let held = liveHoldings()
        let total = held.values.reduce(0, +)
        let (fair, slack) = fairShare(total: total, holders: held.count)
        guard let mine = held[me], mine > fair + slack else { excessSince = nil; return }
        // A small excess (at most twice the slack) is given only once this node has held an
        // excess for `balanceInterval`: under churn the fair share moves by about the slack
        // at every join and back at every leave, and every member just above it would give
        // a sliver, and take one back a moment later. (Counted from the first excess, large
        // or small, so that what a large donation leaves over waits no second time.)
        let since = excessSince ?? now
        excessSince = since
        if mine - fair <= 2 * slack, now < since + settings.balanceInterval {
            nextBalanceAt = Swift.min(nextBalanceAt, since + settings.balanceInterval)
            return
        }
        let donors = held.filter { $0.value > fair + slack }.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        // Takers: members holding a lease, below the fair share (the slack applies to donors
        // only, or a donor far above it could find every other member just within the slack
        // below, and stay). Not one without a lease: a joiner gets its share with its lease,
        // and a member that left for good gave all it held away, lease too, so it ranked
        // first among takers (it holds least) with any donor that had not yet heard it left:
        // at 40 nodes and two cycles a second, young nodes that missed a departure gave it
        // space until stopped nodes held 40% of the pool (`sim pool --nodes 40 --cycles
        // 2000 --explain-stopped`: "given after it stopped").
        let leased = Set(view.ownership().lazy.filter { $0.kind == .lease }.map(\.owner))
        let below = held.filter { $0.value < fair && leased.contains($0.key) }
        // Those that lack more than the slack, if any do: one join or leave moves the fair
        // share by about the slack, and every member at the old share would otherwise take
        // a sliver of its own, cut for it.
        let short = below.filter { fair - $0.value > slack }
        let takers = (short.isEmpty ? below : short).sorted { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }
        guard !takers.isEmpty, let rank = donors.firstIndex(where: { $0.key == me }) else { return }
        // The k-th donor gives to takers k, k + D, k + 2D, … (D donors) until its excess is
        // gone: donors seldom pile onto one taker, and a node far above its share (the
        // genesis of a young mesh) gives to many at once.
        var excess = mine - fair
        var k = rank % takers.count
        var given: [NodeID: [Grant]] = [:]
        var grants = 0
        while excess > 0, grants < Self.donationsPerRound {
            let taker = takers[k]
            let made = donate(Swift.min(excess, fair - taker.value), to: taker.key, limit: Self.donationsPerRound - grants, now: now, &out)
            if made.isEmpty { break }
            given[taker.key, default: []] += made
            grants += made.count
            excess -= Swift.min(excess, made.reduce(0) { $0 + $1.range.count })
            k += donors.count
            if k >= takers.count { break }
        }
        guard !given.isEmpty else { return }
        counters.donations += 1
        for (taker, made) in given.sorted(by: { $0.key < $1.key }) {
            // Straight to the taker (so that it can grant at once), and on by push.
            sendChains(of: made, to: taker, &out)
            push(made, &out, excluding: taker)
        }
        // More may be due (several takers, or a view that moved): look again soon.
        nextBalanceAt = now + settings.balanceDelay * 2
    }

    /// At most this many grants a balancing round signs.
    static var donationsPerRound: Int { 16 }

    /// Signs space grants of up to `amount` addresses of this node's free space to `taker`
    /// (at most `limit` grants), records and persists them, and stops once all but an eighth
    /// of `amount` is given (one more grant for the rest would be one more cut). First the
    /// stretches that touch the taker's free space (at least an eighth of what is left),
    /// from that end (the taker's stretch grows; no new stretch of one owner begins); then
    /// a whole stretch if one covers what is left but an eighth (a stretch given whole is
    /// still one holding; a cut makes one more, for good), else the top of the smallest
    /// stretch larger than what is left (one grant per taker: a join burst at hundreds of
    /// nodes pushes each to every node).
    mutating func donate(_ amount: UInt64, to taker: NodeID, limit: Int, now: Instant, _ out: inout [Output]) -> [Grant] {
        var left = amount
        var made: [Grant] = []
        // Signs `r`, part of free stretch `o`, to the taker.
        func give(_ r: AddressRange, of o: RingView.Ownership) {
            guard let g = signNext(Grant(grantor: me, seq: 0, parent: o.grant, range: r, grantee: taker, kind: .space)) else { return }
            made.append(g)
            left -= r.count
        }
        var free = view.freeSpace(of: me)
        // Never the address this node is about to take for itself: the stretch holding it is
        // split around it.
        if address == nil {
            let keep = preferred ?? Self.derivedAddress(for: me, pool: view.pool)
            free = free.flatMap { o -> [RingView.Ownership] in
                guard o.range.contains(keep) else { return [o] }
                var parts: [RingView.Ownership] = []
                if keep > o.range.first { parts.append(RingView.Ownership(range: AddressRange(o.range.first, keep - 1), owner: o.owner, kind: o.kind, grant: o.grant)) }
                if keep < o.range.last { parts.append(RingView.Ownership(range: AddressRange(keep + 1, o.range.last), owner: o.owner, kind: o.kind, grant: o.grant)) }
                return parts
            }
        }
        // Smallest first (ties: the higher stretch first).
        free.sort { ($0.range.count, $1.range.first) < ($1.range.count, $0.range.first) }
        // First the stretches that touch the taker's own free space, from the end that
        // touches it: the taker's stretch grows and no new one is cut off.
        let theirs = view.freeSpace(of: taker)
        let starts = Set(theirs.map(\.range.first)), ends = Set(theirs.map(\.range.last))
        var i = 0
        // What is left once all but an eighth is given is not worth one more cut.
        let enough = amount - amount / 8
        while i < free.count, amount - left < enough, made.count < limit {
            let o = free[i]
            let below = o.range.last < UInt32.max && starts.contains(o.range.last + 1)
            let above = o.range.first > 0 && ends.contains(o.range.first - 1)
            // Not a sliver of what is left: one grant more for a few addresses.
            guard below || above, o.range.count * 8 >= left else { i += 1; continue }
            free.remove(at: i)
            let n = Swift.min(left, o.range.count)
            give(below ? AddressRange(o.range.last - UInt32(n - 1), o.range.last) : AddressRange(o.range.first, o.range.first + UInt32(n - 1)), of: o)
        }
        while amount - left < enough, made.count < limit, !free.isEmpty {
            // `free` is sorted smallest first: `over` is the smallest stretch larger than what
            // is left (or none), the one before it the largest that fits.
            let over = free.firstIndex { $0.range.count > left } ?? free.count
            let wholeFits = over > 0 && (over == free.count || free[over - 1].range.count >= left - left / 8)
            let o = free.remove(at: wholeFits ? over - 1 : over)
            let n = Swift.min(left, o.range.count)
            // From the top of the range: the bottom stays with this node, next to what it had.
            give(AddressRange(o.range.last - UInt32(n - 1), o.range.last), of: o)
        }
        if !made.isEmpty { out.append(.persist(grants: made, seq: seq)) }
        return made
    }

    /// How long a node holds a grant before it merges it.
    static var mergeSettle: Span { .seconds(2) }

    /// Gathers this node's holdings of free space into one merge grant once they are
    /// `settings.mergeAt` or more (docs/pool.md, "Merging holdings"). Every cut of a stretch (a
    /// lease, a joiner's share, a donation that fits no whole stretch, a lease given back)
    /// leaves one more grant holding part of the pool, and a checkpoint keeps one holding
    /// per such grant: merged, a node's space is a few holdings, however long the history.
    mutating func mergeHoldings(now: Instant, _ out: inout [Output]) {
        guard settings.mergeAt > 0, view.hasGenesis, !leaving, mayGrant(now: now) else { return }
        // Only grants held for `mergeSettle` (or inside the checkpoint): the members this
        // node then gives from the merge most likely hold them too, and can attach it at once.
        // (Merging fresh ones, donations to members about to leave waited as orphans until
        // they had stopped: departed nodes held space, 68 owners at the end of `sim pool
        // --nodes 40 --cycles 120`, 47 before merges.)
        let settled = now - Self.mergeSettle
        var seen = Set<Bytes32>()
        for o in view.freeSpace(of: me) where seenAt[o.grant].map({ $0 <= settled }) ?? true { seen.insert(o.grant) }
        guard seen.count >= Swift.max(2, settings.mergeAt) else { return }
        let refs = Array(seen.sorted().prefix(Grant.mergeLimit))
        guard let g = signNext(Grant(grantor: me, seq: 0, parent: refs[0], range: view.pool, grantee: me, kind: .merge,
                                     extraParents: Array(refs.dropFirst()))) else { return }
        counters.merges += 1
        out.append(.persist(grants: [g], seq: seq))
        push([g], &out)
    }

    /// Sends grants with their ancestors to one member, parents first.
    mutating func sendChains(of grants: [Grant], to node: NodeID, _ out: inout [Output]) {
        var seen = Set<Bytes32>()
        var all: [Grant] = []
        for g in grants { for c in chain(of: g) where seen.insert(c.ref).inserted { all.append(c) } }
        for batch in batches(all) { out.append(.send(signed(.grants(batch)), to: node)) }
    }

    /// The share to give a joiner with its address: its fair share once it has joined (what
    /// the live members hold, over their number plus it), as far as half of this node's
    /// largest free range goes. Balancing tops it up from the others afterwards.
    mutating func joinerShare(for client: NodeID, from free: RangeSet) -> AddressRange? {
        guard let largest = free.ranges.max(by: { ($0.count, $1.first) < ($1.count, $0.first) }), largest.count >= 2 else { return nil }
        let held = liveHoldings()
        let holders = held.count + (held[client] == nil ? 1 : 0)
        let (fair, _) = fairShare(total: held.values.reduce(0, +), holders: holders)
        let size = Swift.max(1, Swift.min(largest.count / 2, fair))
        return AddressRange(largest.last - UInt32(size - 1), largest.last)
    }
}
