import MeshCore

/// Spreading grants: taking them in (within the per-member limits), pushing new ones to a
/// few random members, and the paged anti-entropy digest that repairs what pushes missed
/// (docs/pool.md, "Spreading grants").
extension PoolAgent {
    /// Inserts grants from `from`; returns those that were new here. One that must wait
    /// for its parent makes this node ask the sender for its digest (at most once per
    /// `checkpointRetry`): the parent may lie inside a checkpoint this node has not moved
    /// onto (the digest ask names this node's, and a member on a newer one sends it), or be
    /// a grant the sender holds and this node lacks. Without it, a node that joined just
    /// after a checkpoint took in nothing (not even its own lease) until its first
    /// anti-entropy round, and one leaving then kept what it never saw.
    mutating func absorb(_ grants: [Grant], from: NodeID, _ out: inout [Output]) -> [Grant] {
        var fresh: [Grant] = []
        var waiting = false
        for g in grants where admits(g, now: lastNow) {
            let result = view.insert(g)
            switch result {
            case .added, .orphan:
                if result == .orphan { waiting = true }
                fresh.append(g)
                seenAt[g.ref] = lastNow
                // One of this node's own, from before a restart: never sign that seq again.
                if g.grantor == me, g.seq > seq { seq = g.seq }
            case .duplicate, .rejected: break  // rejected ones are counted by the view
            }
        }
        if waiting { pull(from: from, now: lastNow, &out) }
        if !fresh.isEmpty { scheduleBalance() }
        return fresh
    }

    mutating func afterViewChange(_ fresh: [Grant], now: Instant, _ out: inout [Output]) {
        if leaving {
            // Anything new may make a stretch this node's (a grant to it, or the parent of
            // one that waited as an orphan).
            if !fresh.isEmpty, releaseAt == nil { giveAway(&out) }
            return
        }
        // A conflict resolved against us (lower seq won, or a reclaim): our address is gone.
        // Only a new grant covering our address can do that, so only then is the fold consulted.
        if case .bound(let a) = phase, fresh.contains(where: { $0.range.contains(a) }), view.owner(of: a)?.owner != me {
            counters.conflicts += 1
            out.append(.event(.lost(a)))
            if let grantor = boundBy, grantor != me {
                counters.declinesSent += 1
                out.append(.send(signed(.decline(xid: xid, address: a)), to: grantor))
            }
            phase = .idle
            ensureAddress(now: now, &out)
        } else if case .requesting = phase, let lease = view.leases(of: me).first {
            bind(lease.range.first, &out)
        }
    }

    /// Queues grants to be pushed to `fanout` random members (the largest fanout asked for
    /// in a window applies to the whole batch), sent together at the next flush.
    mutating func push(_ grants: [Grant], _ out: inout [Output], excluding: NodeID? = nil, fanout: Int? = nil) {
        guard !grants.isEmpty, !members.isEmpty else { return }
        pendingPush += grants
        pendingFanout = max(pendingFanout, fanout ?? settings.fanout)
        if let excluding { pendingExcluding.insert(excluding) }
        if flushAt == nil { flushAt = lastNow + settings.pushDelay }
    }

    /// Sends the coalesced grants, in batches, to the same few random members.
    mutating func flush(_ out: inout [Output]) {
        flushAt = nil
        defer {
            pendingPush.removeAll()
            pendingFanout = 0
            pendingExcluding.removeAll()
        }
        guard !pendingPush.isEmpty, !members.isEmpty else { return }
        var seen = Set<Bytes32>()
        let unique = pendingPush.filter { seen.insert($0.ref).inserted }
        var picked: [NodeID] = []
        var attempts = 0
        while picked.count < pendingFanout, attempts < pendingFanout * 4 {
            attempts += 1
            let t = members[Int(rng.next() % UInt64(members.count))]
            if !pendingExcluding.contains(t), !picked.contains(t) { picked.append(t) }
        }
        for t in picked {
            for batch in batches(unique) { out.append(.send(signed(.grants(batch)), to: t)) }
        }
    }

    /// Grants cut into packets of at most `maxPayload` (a reclaim with many votes goes alone).
    func batches(_ grants: some Collection<Grant>) -> [[Grant]] {
        var out: [[Grant]] = []
        var current: [Grant] = [], size = 0
        for g in grants {
            let n = g.encodedSize
            // 128 bytes for the header, sender, kind and count, and the sender's signature.
            if !current.isEmpty, size + n > settings.maxPayload - 128 || current.count == PoolMessage.grantLimit {
                out.append(current)
                current = []
                size = 0
            }
            current.append(g)
            size += n
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// A grant and the ancestors a member that just got it may lack, parents first and `g`
    /// last: its parent's line back to a root, as for any grant, and off that line the other
    /// parents of merges, each with its own line only if this node got it within
    /// `checkpointSettle` (what it has held that long, the others most likely hold too).
    /// Merges make the ancestry a graph reaching back over most of what was granted since
    /// the checkpoint: sent whole with every donation, it tripled the datagrams of `sim
    /// pool --nodes 40 --cycles 120`; with the line alone, donations to young members
    /// about to leave waited as orphans until they had stopped, and departed nodes held
    /// space (84 owners at the end, 48 with everything sent).
    func chain(of g: Grant) -> [Grant] {
        var out: [Grant] = []
        var seen: Set<Bytes32> = [g.ref]
        let since = lastNow - settings.checkpointSettle
        var stack = [g]
        while let x = stack.popLast() {
            for (k, p) in x.allParents.enumerated() where seen.insert(p).inserted {
                guard let parent = view.grants[p] else { continue }
                out.append(parent)
                if k > 0, seenAt[p].map({ $0 < since }) ?? true { continue }
                stack.append(parent)
            }
        }
        out.sort { (view.depths[$0.ref] ?? 0, $0.ref) < (view.depths[$1.ref] ?? 0, $1.ref) }
        return view.withSpentParents(out + [g])
    }

    // MARK: - Anti-entropy

    func grantorDigests() -> [(key: UInt64, grantor: NodeID, digest: GrantorDigest)] {
        view.byGrantor.map { id, st in
            (id.digestKey, id, GrantorDigest(key: id.digestKey, count: st.attachedCount, xor: st.xor, maxSeq: st.maxSeq))
        }.sorted { $0.key < $1.key }
    }

    /// Asks `peer` for its digest, at most once per `checkpointRetry`: its answer brings
    /// the grants this view lacks, and its checkpoint if newer.
    mutating func pull(from peer: NodeID, now: Instant, _ out: inout [Output]) {
        guard pulledAt[peer].map({ now - $0 >= settings.checkpointRetry }) ?? true else { return }
        pulledAt[peer] = now
        if pulledAt.count > 1024 { pulledAt = pulledAt.filter { now - $0.value < settings.checkpointRetry } }
        sendDigest(to: peer, reply: false, &out)
    }

    mutating func sendDigest(to peer: NodeID, reply: Bool, resend: Bool = false, _ out: inout [Output]) {
        syncSession &+= 1
        // The checkpoint this view is built on: a peer on a newer one sends it.
        out.append(.send(signed(.checkpointHave(number: checkpointNumber)), to: peer))
        for p in keyRangePages(grantorDigests().map(\.digest), key: \.key, perPage: (settings.maxPayload - 128) / GrantorDigest.size) {
            let packet = signed(.digest(session: syncSession, reply: reply, last: p.last, lo: p.lo, hi: p.hi, entries: Array(p.items)))
            out.append(resend ? .resend(packet, to: peer) : .send(packet, to: peer))
        }
    }

    mutating func answerDigest(from peer: NodeID, session: UInt32, reply: Bool, last: Bool, lo: UInt64, hi: UInt64,
                               entries: [GrantorDigest], _ out: inout [Output]) {
        let theirs = Dictionary(entries.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        var send: [Grant] = []
        for (key, grantor, mine) in grantorDigests() where (lo...hi).contains(key) {
            // Digests count attached grants only (an orphan may never attach); a grantor
            // missing from theirs counts as none. This node's orphans are not sent: a peer
            // that holds their parent gets them from a view they attached in, and sent on,
            // those that never attach came back after every checkpoint. (Spent grants and
            // reclaims waiting for their voters' grants are sent, also when only the
            // highest seq differs: the peer then knows those seqs.)
            let t = theirs[key] ?? GrantorDigest(key: key, count: 0, xor: 0, maxSeq: 0)
            if t.count == mine.count, t.xor == mine.xor, t.maxSeq >= mine.maxSeq { continue }
            let held = (view.byGrantor[grantor]?.grants ?? []).filter { !view.isOrphan($0) }
            // Usually they only miss the newest: send what is above their highest seq, if
            // that explains the difference (their attached ones and those make these).
            let newer = held.filter { $0.seq > t.maxSeq }
            var count = Int(t.count), xor = t.xor
            for g in newer where view.grants[g.ref] != nil {
                count += 1
                xor ^= g.ref.w0Value
            }
            send += count == Int(mine.count) && xor == mine.xor ? newer : held
        }
        // Parents before children, so that the receiver attaches them as they arrive.
        send.sort { ($0.isGenesis ? 0 : 1, $0.seq) < ($1.isGenesis ? 0 : 1, $1.seq) }
        // A merge naming a spent grant waits for it where that is not known (a restart).
        send = view.withSpentParents(send)
        for batch in batches(send) { out.append(.send(signed(.grants(batch)), to: peer)) }
        if !reply && last { sendDigest(to: peer, reply: true, &out) }
    }
}
