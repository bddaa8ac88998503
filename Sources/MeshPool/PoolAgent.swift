import MeshCore

/// One node's part in the serverless address pool, as a sans-I/O state machine.
///
/// As a *client*, a node without an address sends DISCOVER to up to three live members
/// chosen at random weighted by the free space its ring view says they own (any three if
/// it knows none), naming the address it would like (its previous one, one asked for, or
/// one derived from its node ID). It takes the best OFFER (its requested address, else
/// the largest share), sends REQUEST, and is bound once the ACK's signed lease grant for
/// it is in its view. Timeouts and NAKs restart discovery with exponential backoff.
///
/// As a *server*, a node that owns free space and may grant (not fenced, caught up)
/// answers a live member's DISCOVER with an address (the requested one if it owns it free)
/// and a share (the member's fair share, as far as half its largest free range goes),
/// holds both for that client for `holdTime`, and on REQUEST signs a lease grant and a
/// space grant, asks the shell to persist them (`.persist`, which must be durable before
/// the next output is acted on), then sends ACK. Every packet is signed by its sender and
/// checked on arrival.
///
/// The client side (PoolAgent+Client.swift), the server side (PoolAgent+Server.swift), the
/// settings (PoolAgent+Settings.swift), spreading grants and anti-entropy
/// (PoolAgent+Spread.swift), per-member limits (PoolAgent+Limits.swift), balance
/// (PoolAgent+Balance.swift), reclaim and the fence (PoolAgent+Reclaim.swift), catching
/// up (PoolAgent+CatchUp.swift) and history compaction (PoolAgent+Checkpoint.swift) live
/// beside this file.
///
/// Every new grant is pushed to `fanout` random members once, and a periodic paged digest
/// (per grantor: count and XOR of refs) with one random member repairs what pushes missed.
/// docs/pool.md states the guarantees.
public struct PoolAgent: Sendable {
    public enum Output: Sendable {
        case send(PoolPacket, to: NodeID)
        /// A packet to a member that did not answer the last one (DISCOVER after a round
        /// that gave no lease, a catch-up or reclaim ask repeated): send it as `.send`, and
        /// also on the member's session if none works yet, whose handshake falls back to
        /// relays (docs/pool.md, "Through relays"). Handling it twice must be harmless.
        case resend(PoolPacket, to: NodeID)
        /// Make these grants and this sequence high-water mark durable before acting on any
        /// later output.
        case persist(grants: [Grant], seq: UInt64)
        /// Make durable, before acting on any later output, that this node voted for
        /// `successor` to reclaim `holding` (it never votes for two).
        case persistVote(holding: Bytes32, successor: NodeID)
        /// The view moved onto this checkpoint: make it durable with the grants outside its
        /// cut, and drop those inside (compact the state file).
        case persistCheckpoint(PoolCheckpoint)
        case event(PoolEvent)
    }

    public enum Phase: Sendable, Equatable {
        case idle
        case discovering(xid: UInt32, attempt: Int)
        case requesting(xid: UInt32, offerer: NodeID, address: UInt32)
        case bound(address: UInt32)
        case exhausted(retryAt: Instant)
    }

    struct Offer: Sendable {
        var from: NodeID
        var address: UInt32
        var share: AddressRange?
    }

    struct Hold: Sendable {
        var xid: UInt32
        var address: UInt32
        var share: AddressRange?
        var expires: Instant
    }

    public let me: NodeID
    public let settings: Settings
    let auth: any RecordAuthenticator
    public internal(set) var view: RingView
    public internal(set) var phase: Phase = .idle
    /// The highest grant sequence number this node has used (persisted).
    public internal(set) var seq: UInt64
    var rng: SeededRandom
    var xid: UInt32
    public internal(set) var members: [NodeID] = []
    public internal(set) var suspected: Set<NodeID> = []
    /// Members not suspected of being gone.
    var liveMembers: Set<NodeID> { Set(members).subtracting(suspected) }
    var preferred: UInt32?
    var offers: [Offer] = []
    var offersUntil: Instant = .distantFuture
    var deadline: Instant = .distantFuture
    var attempt = 0
    var requestTry = 0
    /// Offers held, one per client (a client asking again replaces its hold).
    var holds: [NodeID: Hold] = [:]
    /// The members the current DISCOVER went to: only they may OFFER or NAK it.
    var asked: Set<NodeID> = []
    var nextSyncAt: Instant
    var syncSession: UInt32 = 0
    var naksNoSpace = 0
    var warmUntil: Instant?
    /// Grants waiting to be pushed until `flushAt`, and to how many members.
    var pendingPush: [Grant] = []
    var pendingFanout = 0
    var pendingExcluding: Set<NodeID> = []
    var flushAt: Instant?
    var lastNow = Instant.zero
    /// Why the node is backing off, if it is (the outcome of its last attempt).
    public internal(set) var waitingReason: String?
    public internal(set) var counters = Counters()
    // Reclaim and the fence (PoolAgent+Reclaim.swift).
    /// Owners of space that membership says are gone, and since when (as this node saw it).
    var absentSince: [NodeID: Instant] = [:]
    /// When this node last saw live members (itself included) holding most of the pool.
    var lastQuorumAt: Instant?
    /// The fence as last reported: nil at the start, when a node is fenced because it knows
    /// no majority yet. That is an event only if it lasts half the reclaim time; reaching a
    /// majority is, and so is every change after.
    var fencedReported: Bool?
    let startedAt: Instant
    var nextReclaimCheck: Instant
    /// Holding → the successor this node voted for (persisted; it never votes for two).
    public internal(set) var votedFor: [Bytes32: NodeID]
    var proposals: [Bytes32: Proposal] = [:]
    var naksFenced = 0
    /// The grantor of the lease this node is bound by (told by DECLINE if it is lost).
    var boundBy: NodeID?
    /// The node's own lease lapsed (cut off for half the lease time, or a long suspend):
    /// not used again until the node reaches a quorum.
    var leaseSuspended = false
    /// When the next balancing round runs (PoolAgent+Balance.swift).
    var nextBalanceAt = Instant.distantFuture
    /// Since when this node has held more than its fair share plus the slack (`balance`).
    var excessSince: Instant?
    // Catching up after a restart or a suspend (PoolAgent+CatchUp.swift).
    /// Whether this node has caught up with members holding a quorum since it (re)started.
    public internal(set) var isCaughtUp: Bool
    /// Members heard from while catching up or releasing, with what their digests said
    /// they hold (grant count by grantor key).
    public internal(set) var heardFrom: [NodeID: [UInt64: UInt32]] = [:]
    var gaps = DigestGaps()
    var nextCatchUpAskAt = Instant.distantFuture
    /// Members asked while catching up (asked again, the ask is a `.resend`).
    var catchUpAsked: Set<NodeID> = []
    var catchUpSince: Instant
    var lastTickAt: Instant?
    /// Since when this node has been fenced (nil: not fenced).
    var fencedSince: Instant?
    /// Per-grantor ceilings on the seqs this node takes in (PoolAgent+Limits.swift).
    var grantCeilings: [NodeID: GrantCeiling] = [:]
    // History compaction (PoolAgent+Checkpoint.swift).
    var assemblies: [Bytes32: Assembly] = [:]
    var checkpointProposal: CheckpointProposal?
    /// When each grant held since the base came in (a checkpoint takes in settled ones).
    var seenAt: [Bytes32: Instant] = [:]
    /// When this node last sent its checkpoint to a member, and last asked a proposer for
    /// its grants (each at most once per `checkpointRetry`).
    var offeredAt: [NodeID: Instant] = [:]
    var pulledAt: [NodeID: Instant] = [:]
    /// A proposal this node could not fold for lack of grants inside its cut, and who sent
    /// it: looked at again once the grants it lacked have come (`recheckProposal`).
    var lacking: (checkpoint: PoolCheckpoint, from: NodeID, since: Instant)?
    /// The cutoff of each vote this run gave (checked before signing a checkpoint).
    var votedCutoff: [Bytes32: UInt64] = [:]
    /// Why this node last refused a checkpoint (for status and logs).
    public internal(set) var lastCheckpointRefusal: String?
    var nextCheckpointAt = Instant.zero
    // Leaving for good (`release`, PoolAgent+Client.swift): released (grants nothing, gives
    // on whatever comes), since when, when it gives its space away (nil once it has), and
    // the checkpoint each member named (CHECKPOINT HAVE) since, and the last roll call.
    var leaving = false
    var releaseSince: Instant?, releaseAt: Instant?
    var checkpointsHeard: [NodeID: UInt64] = [:]
    var rollCall: RollCall?
    /// Released, and not yet given its space away (waiting for `releaseDelay`, or to catch up).
    public var releasePending: Bool { releaseAt != nil }

    /// - Parameters:
    ///   - seq: the persisted high-water mark of this node's grant sequence numbers.
    ///   - preferred: the address to ask for (e.g. `--address`); otherwise the previous lease
    ///     or one derived from the node ID.
    ///   - votes: the persisted reclaim votes (holding → successor).
    ///   - fresh: this node's first start in this mesh (no state from an earlier run). Any
    ///     other start catches up with the mesh before it grants (PoolAgent+CatchUp.swift).
    public init(me: NodeID, view: RingView, auth: any RecordAuthenticator, seq: UInt64, settings: Settings = Settings(),
                preferred: UInt32? = nil, votes: [Bytes32: NodeID] = [:], fresh: Bool = true, seed: UInt64, now: Instant) {
        self.me = me
        isCaughtUp = fresh
        catchUpSince = now
        if !fresh { nextCatchUpAskAt = now }
        startedAt = now
        votedFor = votes
        nextReclaimCheck = now
        self.view = view
        self.auth = auth
        // Never below this node's own grants that a checkpoint took in.
        self.seq = Swift.max(seq, view.insideSeq[me] ?? 0)
        self.settings = settings
        self.preferred = preferred
        rng = SeededRandom(seed: seed)
        xid = UInt32(truncatingIfNeeded: rng.next())
        // The first digest exchange comes 2-4 s after start, to catch up quickly.
        nextSyncAt = now + Span.seconds(2) * (1 + Double(rng.next() % 1000) / 1000)
    }

    /// Without an address and without a live member to ask for one (a join under way).
    public var isWaitingForMembers: Bool {
        if case .exhausted = phase, members.isEmpty { return true }
        return false
    }

    /// The address this node holds, if bound.
    public var address: UInt32? {
        if case .bound(let a) = phase { return a }
        return nil
    }

    var forwardFanout: Int { members.count < 64 ? settings.forwardFanout * 2 : settings.forwardFanout }

    /// Members that membership suspects (still talked to, but not counted for the fence).
    public mutating func setSuspected(_ ids: Set<NodeID>) {
        if ids != suspected { scheduleBalance() }
        suspected = ids
    }

    /// The live members to talk to (from membership).
    public mutating func setMembers(_ ids: [NodeID]) {
        let new = ids.filter { $0 != me }.sorted()
        if new != members {
            scheduleBalance()
            if !isCaughtUp { nextCatchUpAskAt = min(nextCatchUpAskAt, lastNow) }
        }
        members = new
    }

    /// Adds one live member (kept sorted; cheaper than `setMembers` for one change).
    public mutating func addMember(_ id: NodeID) {
        guard id != me else { return }
        let i = insertionIndex(id)
        if i < members.count, members[i] == id { return }
        members.insert(id, at: i)
        scheduleBalance()
        if !isCaughtUp { nextCatchUpAskAt = min(nextCatchUpAskAt, lastNow) }
    }

    public mutating func removeMember(_ id: NodeID) {
        let i = insertionIndex(id)
        if i < members.count, members[i] == id {
            members.remove(at: i)
            scheduleBalance()
        }
    }

    func insertionIndex(_ id: NodeID) -> Int {
        members.partitionPoint { $0 < id }
    }

    /// The address derived from a node ID: the same every time, so a node tends to get the
    /// same address even with a fresh state directory (as ZeroTier and n2n do).
    public static func derivedAddress(for id: NodeID, pool: AddressRange) -> UInt32 {
        pool.first + UInt32(id.key.w0Value % pool.count)
    }

    // MARK: - Input

    public mutating func receive(_ packet: PoolPacket, now: Instant) -> [Output] {
        lastNow = now
        var out: [Output] = []
        let from = packet.sender
        guard from != me else { return out }
        // Only the sender's own key signs its packets: nobody asks, offers or votes in
        // another's name, or under a made-up node ID.
        guard auth.verify(signature: packet.signature, message: packet.signedBytes, signer: from) else {
            counters.badPacketSignatures += 1
            return out
        }
        switch packet.message {
        case .discover, .request, .decline:
            // Served only for live members (gossip holds their signed records).
            guard isMember(from) else {
                counters.refusedNonMembers += 1
                return out
            }
        default: break
        }
        switch packet.message {
        case .discover(let x, let requested):
            serveDiscover(from: from, xid: x, requested: requested, now: now, &out)
        case .offer(let x, let address, let share, _):
            guard case .discovering(let mine, _) = phase, mine == x, asked.contains(from), view.pool.contains(address) else { return out }
            counters.offers += 1
            offers.append(Offer(from: from, address: address, share: share))
            if address == (preferred ?? Self.derivedAddress(for: me, pool: view.pool)) || offers.count >= settings.discoverTargets {
                chooseOffer(now: now, &out)
            } else if offersUntil == .distantFuture {
                offersUntil = now + settings.offerWait
            }
        case .request(let x, let address):
            serveRequest(from: from, xid: x, address: address, now: now, &out)
        case .ack(let x, let grants):
            let fresh = absorb(grants, from: from, &out)
            push(fresh, &out, fanout: forwardFanout)
            guard case .requesting(let mine, let offerer, let address) = phase, mine == x, offerer == from else { break }
            counters.acks += 1
            if let lease = view.leases(of: me).first {
                bind(lease.range.first, &out)
            } else if let lease = grants.first(where: { $0.kind == .lease && $0.grantee == me && $0.range.first == address }),
                      view.grants[lease.ref] != nil, let holder = view.owner(of: address), holder.owner != me {
                // Granted, and the grant is in this view (not waiting for its parent), but the
                // view already shows the address held by another: DECLINE.
                counters.declinesSent += 1
                out.append(.send(signed(.decline(xid: x, address: address)), to: from))
                retryLater(now: now, exhausted: false, refused: true, &out)
            }
        case .decline(_, let address):
            counters.declinesReceived += 1
            counters.conflicts += 1
            out.append(.event(.declined(address, by: from)))
        case .nak(let x, let reason):
            counters.naks += 1
            switch phase {
            case .discovering where !asked.contains(from): break
            case .requesting(_, let offerer, _) where offerer != from: break
            case .requesting(let mine, _, _) where mine == x:
                retryLater(now: now, exhausted: false, refused: true, &out)
            case .discovering(let mine, _) where mine == x:
                if reason == .noSpace { naksNoSpace += 1 }
                if reason == .fenced { naksFenced += 1 }
            default: break
            }
        case .grants(let grants):
            let fresh = absorb(grants, from: from, &out)
            push(fresh, &out, fanout: forwardFanout)
            afterViewChange(fresh, now: now, &out)
            recheckProposal(after: fresh, now: now, &out)
        case .digest(let s, let reply, let last, let lo, let hi, let entries):
            heardDigest(from: from, lo: lo, hi: hi, entries: entries, now: now, &out)
            answerDigest(from: from, session: s, reply: reply, last: last, lo: lo, hi: hi, entries: entries, &out)
        case .reclaimAsk(let holding, let cutoff):
            answerReclaimAsk(from: from, holding: holding, cutoff: cutoff, now: now, &out)
        case .reclaimVote(let holding, let cutoff, let vote):
            takeReclaimVote(from: from, holding: holding, cutoff: cutoff, vote: vote, now: now, &out)
        case .checkpointHave(let number):
            if releaseAt != nil, checkpointsHeard.count < 4096 || checkpointsHeard[from] != nil { checkpointsHeard[from] = number }
            offerCheckpoint(to: from, theirs: number, now: now, &out)
        case .checkpointPart(let id, let index, let count, let final, let bytes):
            let before = checkpointNumber
            takeCheckpointPart(from: from, id: id, index: index, count: count, final: final, bytes: bytes, now: now, &out)
            if checkpointNumber != before { afterViewChange(view.allGrants, now: now, &out) }
        case .checkpointSign(let ref, let signature):
            takeCheckpointSignature(from: from, ref: ref, signature: signature, &out)
        }
        if case .requesting = phase, let lease = view.leases(of: me).first { bind(lease.range.first, &out) }
        if !isCaughtUp { checkCaughtUp(now: now, &out) } else if leaving { giveAwayIfDue(now: now, &out) }
        return out
    }

    /// Time passes: offer windows close, requests time out, holds lapse, syncs run.
    public mutating func tick(now: Instant) -> [Output] {
        lastNow = now
        var out: [Output] = []
        noticeClockJump(now: now, &out)
        if !isCaughtUp {
            if now >= nextCatchUpAskAt, !members.isEmpty { askToCatchUp(now: now, &out) }
            checkCaughtUp(now: now, &out)
        }
        // Not caught up, it waits: what it signed could repeat a seq (`checkCaughtUp` gives then).
        if isCaughtUp { giveAwayIfDue(now: now, &out) }
        if let f = flushAt, now >= f { flush(&out) }
        switch phase {
        case .discovering:
            if now >= offersUntil, !offers.isEmpty {
                chooseOffer(now: now, &out)
            } else if now >= deadline {
                let refusals = naksNoSpace + naksFenced
                let all = refusals > 0 && refusals >= min(settings.discoverTargets, members.count)
                retryLater(now: now, exhausted: all && naksFenced == 0, fenced: all && naksFenced > 0, &out)
            }
        case .requesting(let x, let offerer, let address):
            if now >= deadline {
                if requestTry < settings.requestTries {
                    requestTry += 1
                    deadline = now + settings.requestTimeout
                    counters.requests += 1
                    out.append(.send(signed(.request(xid: x, address: address)), to: offerer))
                } else {
                    retryLater(now: now, exhausted: false, &out)
                }
            }
        case .exhausted(let at):
            if now >= at { ensureAddress(now: now, &out) }
        case .idle:
            if let w = warmUntil, now >= w { startDiscover(now: now, &out) }
        case .bound:
            break
        }
        for (c, h) in holds where now >= h.expires { holds[c] = nil }
        if now >= nextReclaimCheck {
            nextReclaimCheck = now + settings.reclaimCheck
            checkDepartures(now: now, &out)
        }
        askForVotes(now: now, &out)
        checkpointTick(now: now, &out)
        if now >= nextBalanceAt {
            balance(now: now, &out)
            mergeHoldings(now: now, &out)
        }
        if now >= nextSyncAt {
            // Every 15 s; every 2 s while fenced, with a member membership does not suspect.
            nextSyncAt = now + (fencedSince != nil ? settings.catchUpInterval : settings.syncInterval)
            let trusted = members.filter { !suspected.contains($0) }
            let from = trusted.isEmpty ? members : trusted
            if !from.isEmpty {
                let peer = from[Int(rng.next() % UInt64(from.count))]
                sendDigest(to: peer, reply: false, &out)
            }
        }
        return out
    }

    public var nextDeadline: Instant {
        var d = min(nextSyncAt, flushAt ?? .distantFuture, nextReclaimCheck, nextBalanceAt)
        // Never a time already past (a release waiting for its catch-up).
        if let r = releaseAt, r > lastNow { d = min(d, r) }
        // Catching up: the next ask, or the moment a node alone may trust its disk; never
        // a time already past (the shell would wake it again and again at one instant).
        if !isCaughtUp {
            d = min(d, max(lastNow + settings.catchUpInterval * 0.25, min(nextCatchUpAskAt, catchUpSince + settings.reclaimTime * 0.5)))
        }
        for p in proposals.values { d = min(d, p.nextAskAt) }
        if let p = checkpointProposal { d = min(d, p.nextAskAt, p.quorumAt.map { $0 + settings.checkpointRetry } ?? p.nextAskAt) }
        switch phase {
        case .discovering: d = min(d, offersUntil, deadline)
        case .requesting: d = min(d, deadline)
        case .exhausted(let at): d = min(d, at)
        case .idle: if let w = warmUntil { d = min(d, w) }
        default: break
        }
        for h in holds.values { d = min(d, h.expires) }
        return d
    }
}

public enum PoolEvent: Sendable, Equatable {
    /// This node holds `address`.
    case leased(UInt32)
    /// This node lost `address` (a conflict resolved against it); it will ask again.
    case lost(UInt32)
    /// `by` found `address`, which this node granted it, held by another, and asks again.
    case declined(UInt32, by: NodeID)
    /// Every member asked had no free space.
    case exhausted
    /// This node gave its address (and all its space) back, leaving for good.
    case released(UInt32)
    /// This node stopped using `address`: it could not renew its lease (no quorum for half
    /// the lease time, or a suspend). It takes it back once it reaches a quorum, if still its.
    case expired(UInt32)
    /// This node, as successor, took over `range` from `from`, gone longer than the reclaim time.
    case reclaimed(from: NodeID, range: AddressRange, forced: Bool)
    /// This node stopped granting (the live members, itself included, do not hold a quorum
    /// of the pool), or started again.
    case fenced(Bool)
}

extension Bytes32 {
    /// The first 8 bytes as an integer (native order; for hashing-like uses only).
    public var w0Value: UInt64 { withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
}

extension PoolAgent {
    /// The node leasing `address`, if anyone does (for routing overlay packets).
    public mutating func leaseHolder(of address: UInt32) -> NodeID? {
        guard let o = view.owner(of: address), o.kind == .lease else { return nil }
        return o.owner
    }
}
