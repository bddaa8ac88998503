import MeshCore
import MeshCrypto
import MeshWire

/// History compaction (docs/pool.md, "History compaction"): the holder of the pool's first
/// address proposes a checkpoint of its view once it holds `checkpointEvery` grants; every
/// member that folds the same holdings from its own grants (and has no vote given for a
/// reclaim the cut leaves out) signs it; once the signers hold a quorum of the pool (in the
/// proposer's view, now), the checkpoint replaces the grants inside its cut on every node
/// whose view finds the same quorum. A node that holds nothing, or is catching up, takes
/// it on trust.
extension PoolAgent {
    /// A checkpoint arriving in parts.
    struct Assembly: Sendable {
        var count: Int
        var final: Bool
        var parts: [Int: [UInt8]] = [:]
        var started: Instant
    }

    /// A checkpoint this node proposed and is collecting signatures for.
    struct CheckpointProposal: Sendable {
        var checkpoint: PoolCheckpoint
        var tries = 0
        var nextAskAt: Instant
        /// When its signers first held a quorum: it waits one `checkpointRetry` more for the
        /// others (every live member's signature, or as many as come).
        var quorumAt: Instant?
    }

    /// What this node's view is built on.
    public var checkpointNumber: UInt64 { view.base?.number ?? 0 }

    // MARK: - Proposing

    /// On a tick: propose a checkpoint, or ask again those that have not signed.
    mutating func checkpointTick(now: Instant, _ out: inout [Output]) {
        for (id, a) in assemblies where now - a.started > settings.checkpointRetry * 6 { assemblies[id] = nil }
        if var p = checkpointProposal {
            if let q = p.quorumAt, now >= q + settings.checkpointRetry, p.checkpoint.number == checkpointNumber + 1 {
                finishProposal(p.checkpoint, &out)
                return
            }
            guard now >= p.nextAskAt else { return }
            guard p.tries < 6, p.checkpoint.number == checkpointNumber + 1 else {
                checkpointProposal = nil
                nextCheckpointAt = now + settings.checkpointRetry * 6
                return
            }
            p.tries += 1
            p.nextAskAt = now + settings.checkpointRetry
            checkpointProposal = p
            let signed = Set(p.checkpoint.signatures.map(\.signer))
            for m in members where !signed.contains(m) && !suspected.contains(m) { sendCheckpoint(p.checkpoint, to: m, final: false, &out) }
            return
        }
        guard settings.checkpointEvery > 0, now >= nextCheckpointAt, view.grantCount >= settings.checkpointEvery else { return }
        // Who proposes is looked at once a second, not at every tick (it folds the view).
        nextCheckpointAt = now + .seconds(1)
        guard isProposer(), mayGrant(now: now) else { return }
        nextCheckpointAt = now + settings.checkpointRetry
        let settled = now - settings.checkpointSettle
        let seen = seenAt
        let cut = view.closedCut { g in (seen[g.ref] ?? .zero) <= settled }
        let inside = view.grants.values.filter { g in g.isGenesis || cut[g.grantor].map { g.seq <= $0 } ?? false }.count
        // Not worth it unless it takes in at least half a checkpoint's worth.
        guard inside * 2 >= settings.checkpointEvery, case .success(var cp) = view.checkpoint(cut: cut) else { return }
        guard cp.encodedSize <= PoolMessage.partLimit * Self.partSize else {
            counters.checkpointsTooLarge += 1
            return
        }
        cp.signatures = [PoolCheckpoint.Signature(signer: me, signature: auth.sign(PoolCheckpoint.signedBytes(ref: cp.ref)))]
        counters.checkpointsProposed += 1
        if members.isEmpty, signedByQuorum(cp) {
            finishProposal(cp, &out)
            return
        }
        checkpointProposal = CheckpointProposal(checkpoint: cp, nextAskAt: now + settings.checkpointRetry,
                                                quorumAt: signedByQuorum(cp) ? now : nil)
        for m in members where !suspected.contains(m) { sendCheckpoint(cp, to: m, final: false, &out) }
    }

    /// A member's signature over this node's proposal.
    mutating func takeCheckpointSignature(from: NodeID, ref: Bytes32, signature: [UInt8], _ out: inout [Output]) {
        guard var p = checkpointProposal, p.checkpoint.ref == ref, !p.checkpoint.signatures.contains(where: { $0.signer == from }),
              auth.verify(signature: signature, message: PoolCheckpoint.signedBytes(ref: ref), signer: from) else { return }
        p.checkpoint.signatures.append(PoolCheckpoint.Signature(signer: from, signature: signature))
        if p.quorumAt == nil, signedByQuorum(p.checkpoint) { p.quorumAt = lastNow }
        checkpointProposal = p
        guard p.quorumAt != nil else { return }
        let signed = Set(p.checkpoint.signatures.map(\.signer))
        if members.allSatisfy({ signed.contains($0) || suspected.contains($0) }) { finishProposal(p.checkpoint, &out) }
    }

    /// The proposal signed by a quorum (and by as many more as signed in time): this node
    /// moves onto it and sends it to every member. More signatures than a bare quorum let
    /// every member find the signers holding a quorum in its own view, which may differ a
    /// little from the proposer's.
    mutating func finishProposal(_ cp: PoolCheckpoint, _ out: inout [Output]) {
        checkpointProposal = nil
        guard case .success(let built) = view.built(onLater: cp) else { return }
        adopt(built, cp, &out)
        for m in members where !suspected.contains(m) { sendCheckpoint(cp, to: m, final: true, &out) }
    }

    /// Whether this node proposes checkpoints: the first stretch of the pool (from its
    /// first address) held by a live member not suspected, or by this node, is its. (Views
    /// may differ for a moment, and two nodes propose: both checkpoints are folds of the
    /// same history, and either serves.)
    mutating func isProposer() -> Bool {
        let live = liveMembers
        return view.ownership().first { $0.owner == me || live.contains($0.owner) }?.owner == me
    }

    // MARK: - Receiving

    static let partSize = 1100

    /// `cp` in parts of at most `partSize` bytes: a proposal to sign, or (`final`) one
    /// signed by a quorum to move onto.
    mutating func sendCheckpoint(_ cp: PoolCheckpoint, to peer: NodeID, final: Bool, _ out: inout [Output]) {
        let bytes = cp.wireBytes
        let id = Bytes32(Blake2b.hash(bytes, outputLength: 32))!
        let count = (bytes.count + Self.partSize - 1) / Self.partSize
        guard count <= PoolMessage.partLimit else { return }
        for i in 0..<count {
            let piece = Array(bytes[(i * Self.partSize)..<min(bytes.count, (i + 1) * Self.partSize)])
            out.append(.send(signed(.checkpointPart(id: id, index: UInt16(i), count: UInt16(count), final: final, bytes: piece)), to: peer))
        }
    }

    mutating func takeCheckpointPart(from: NodeID, id: Bytes32, index: UInt16, count: UInt16, final: Bool, bytes: [UInt8],
                                     now: Instant, _ out: inout [Output]) {
        var a = assemblies[id] ?? Assembly(count: Int(count), final: final, started: now)
        guard a.count == Int(count), a.final == final else { return }
        if assemblies[id] == nil {
            // A few at a time: the oldest goes (each at most about 1 MiB).
            if assemblies.count >= 4, let oldest = assemblies.min(by: { $0.value.started < $1.value.started })?.key { assemblies[oldest] = nil }
        }
        a.parts[Int(index)] = bytes
        guard a.parts.count == a.count else {
            assemblies[id] = a
            return
        }
        assemblies[id] = nil
        let whole = (0..<a.count).flatMap { a.parts[$0] ?? [] }
        guard Bytes32(Blake2b.hash(whole, outputLength: 32)) == id else {
            counters.checkpointsRefused += 1
            lastCheckpointRefusal = "a checkpoint whose parts do not match their id"
            return
        }
        let cp: PoolCheckpoint
        do { cp = try PoolCheckpoint(wireBytes: whole) } catch {
            counters.checkpointsRefused += 1
            lastCheckpointRefusal = "a checkpoint that does not decode: \(error)"
            return
        }
        takeCheckpoint(cp, from: from, final: a.final, now: now, &out)
    }

    /// A whole checkpoint from `from`: a proposal to sign, or (`final`) one signed by a
    /// quorum to move to.
    mutating func takeCheckpoint(_ cp: PoolCheckpoint, from: NodeID, final: Bool, now: Instant, _ out: inout [Output]) {
        guard cp.number > checkpointNumber else { return }
        if final {
            if !moveOnto(cp, &out) {
                refuseCheckpoint(cp, view.hasGenesis && isCaughtUp
                                 ? "its signers hold no quorum in this view, or this view cannot build on it"
                                 : "it is malformed")
            }
            return
        }
        // A proposal: sign it if this view folds the same, and no vote of this node's is
        // for a reclaim the cut leaves out.
        guard isCaughtUp, cp.number == checkpointNumber + 1, cp.previous == (view.base?.ref ?? .zero) else { return }
        // Checked without building the view on it: signing changes nothing here.
        if let why = view.foldProblem(cp) {
            refuseCheckpoint(cp, why.description)
            lacking = missesGrants(cp) ? (cp, from, now) : nil
            // Most often it lacks the proposer's newest grants: fetch them before it asks
            // again (once per ask: the answer may bring the checkpoint again).
            pull(from: from, now: now, &out)
            return
        }
        if hasVoteOutside(cp) {
            refuseCheckpoint(cp, "this node voted for a reclaim its cut leaves out")
            return
        }
        lacking = nil
        counters.checkpointsSigned += 1
        out.append(.send(signed(.checkpointSign(ref: cp.ref, signature: auth.sign(PoolCheckpoint.signedBytes(ref: cp.ref)))), to: from))
    }

    /// Whether this view lacks grants inside `cp`'s cut: some grantor's marked seqs are not
    /// all here.
    func missesGrants(_ cp: PoolCheckpoint) -> Bool {
        cp.marks.contains { (view.byGrantor[$0.grantor]?.contiguousSeq ?? 0) < $0.seq }
    }

    /// Grants arrived: if they complete the cut of a proposal this node refused for lack
    /// of them, look at it again now (and sign it if it folds) rather than at the
    /// proposer's next ask, `checkpointRetry` later.
    mutating func recheckProposal(after fresh: [Grant], now: Instant, _ out: inout [Output]) {
        guard let l = lacking else { return }
        guard l.checkpoint.number == checkpointNumber + 1, now - l.since < settings.checkpointRetry * 6 else {
            lacking = nil
            return
        }
        guard fresh.contains(where: { l.checkpoint.holdsInside($0) }), !missesGrants(l.checkpoint) else { return }
        lacking = nil
        takeCheckpoint(l.checkpoint, from: l.from, final: false, now: now, &out)
    }

    mutating func refuseCheckpoint(_ cp: PoolCheckpoint, _ why: String) {
        counters.checkpointsRefused += 1
        lastCheckpointRefusal = "checkpoint \(cp.number): \(why)"
    }

    /// A member on an older checkpoint (its CHECKPOINT HAVE said so) gets this view's, at
    /// most once per `checkpointRetry` (every digest exchange carries a HAVE).
    mutating func offerCheckpoint(to peer: NodeID, theirs: UInt64, now: Instant, _ out: inout [Output]) {
        guard let base = view.base, base.number > theirs, offeredAt[peer].map({ now - $0 >= settings.checkpointRetry }) ?? true else { return }
        offeredAt[peer] = now
        if offeredAt.count > 1024 { offeredAt = offeredAt.filter { now - $0.value < settings.checkpointRetry } }
        sendCheckpoint(base, to: peer, final: true, &out)
    }

    /// Whether `cp`'s valid signers hold a quorum of the pool in this node's view now
    /// (`RingView.signedWeight`).
    mutating func signedByQuorum(_ cp: PoolCheckpoint) -> Bool {
        RingView.isQuorum(view.signedWeight(cp), of: view.pool)
    }

    /// Whether this node voted for a reclaim not made yet that `cp` would make invalid: its
    /// cut takes in grants of the departed node above the vote's cutoff, so the reclaim
    /// would reach inside it. Such a node must not sign: every quorum of signers holds a
    /// voter of any reclaim that a quorum voted for.
    mutating func hasVoteOutside(_ cp: PoolCheckpoint) -> Bool {
        let inside = cp.insideSeq
        let holding = Set(view.ownership().map(\.grant))
        for (x, _) in votedFor {
            // Made already, or moot: the departed node no longer holds anything by it.
            guard holding.contains(x), let g = view.parentGrant(x) else { continue }
            let cutoff = votedCutoff[x] ?? view.highestSeq(of: g.grantee) ?? 0
            if (inside[g.grantee] ?? 0) > cutoff { return true }
        }
        return false
    }

    /// Moves this view onto `cp`, a checkpoint said to be signed by a quorum, if this node
    /// can check that (docs/pool.md, "Who moves onto it"). A caught-up node needs its
    /// signers to hold a quorum in its own view now (a checkpoint a member forged, signed by
    /// identities it minted, weighs nothing there), and then folds it from its own grants,
    /// or, if it lacks a few grants inside the cut (pushes that missed it, which the others
    /// dropped), takes it as shown (`checkpointsWeighed`). A node that holds nothing, or is
    /// catching up (an old backup, a wiped disk), cannot weigh it: it takes it on trust, if
    /// well formed (`checkpointsTrusted`; weak subjectivity, "Trusting is a choice").
    mutating func moveOnto(_ cp: PoolCheckpoint, _ out: inout [Output]) -> Bool {
        // A leaving node takes it on trust too: it signs nothing more but the gift of what
        // it holds, and one that fell a few checkpoints behind under churn may find their
        // signers (members since) holding no quorum in its view, and would keep for good
        // what it was given since (a forged one would only make its gift go astray).
        let weighs = view.hasGenesis && isCaughtUp && !leaving
        if weighs { guard signedByQuorum(cp) else { return false } }
        // Folded from this view's own grants: checked as its signers checked it.
        if case .success(let built) = view.built(onLater: cp) {
            adopt(built, cp, &out)
            return true
        }
        guard case .success(let fresh) = view.trusting(cp) else { return false }
        if weighs { counters.checkpointsWeighed += 1 } else { counters.checkpointsTrusted += 1 }
        adopt(view.spentCarried(into: fresh, at: cp).rebuiltWith(view.allGrants), cp, &out)
        return true
    }

    /// This node's view becomes `next`, built on `cp`.
    mutating func adopt(_ next: RingView, _ cp: PoolCheckpoint, _ out: inout [Output]) {
        view = next
        seenAt = seenAt.filter { next.grants[$0.key] != nil }
        counters.checkpoints += 1
        // Never sign again a seq of this node's that the checkpoint took in.
        if let mine = view.insideSeq[me], mine > seq {
            seq = mine
            out.append(.persist(grants: [], seq: seq))
        }
        if let p = checkpointProposal, p.checkpoint.number <= cp.number { checkpointProposal = nil }
        out.append(.persistCheckpoint(cp))
    }
}

extension PoolCheckpoint {
    public var encodedSize: Int { wireBytes.count }
}
