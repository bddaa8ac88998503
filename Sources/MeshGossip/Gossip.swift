import MeshCore
import MeshWire

/// SWIM membership with Lifeguard, as a sans-I/O state machine.
///
/// SWIM (Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process
/// Group Membership Protocol", DSN 2002): each protocol period this node probes one member
/// (round-robin over a shuffled list); without an ack by `probeTimeout` it asks
/// `indirectChecks` others to probe; without any ack by the end of the period it
/// *suspects* the member, which becomes *dead* if nobody refutes before the suspicion
/// timeout. A member refutes a suspicion about itself by raising its incarnation. News
/// rides piggybacked on probes and on gossip rounds, each update sent about
/// retransmitMult × log10(N+1) times.
///
/// Lifeguard (Dadgar, Phillips, Currey, 2018): a local health multiplier (`awareness`)
/// stretches this node's own timeouts when it misses acks and nacks or must refute, so a
/// slow node accuses others less; suspicion timeouts shrink with independent
/// confirmations; and probes of a suspect carry the suspicion so it can refute at once
/// (buddy system). Intermediaries answer indirect probes with a nack when the target is
/// silent, so the prober can tell a dead target from its own lost packets.
///
/// Anti-entropy (memberlist's push-pull): periodically, digests of (member, incarnation,
/// status) go to one random member in pages sorted by node ID; each side sends only the
/// records the other lacks. A joiner does this with its seeds to learn the mesh at once.
///
/// Departures from the papers and memberlist are listed in docs/gossip.md: records are
/// signed by the member they describe; anti-entropy runs over UDP digests, not TCP full state.
///
/// Inputs: `receive`, `tick`, `join`, `leave`. Outputs: packets to send and events.
/// The caller calls `tick(now:)` no later than `nextDeadline`.
public struct Gossip: Sendable {
    public let settings: GossipSettings
    let auth: any RecordAuthenticator
    var rng: SeededRandom

    public internal(set) var me: MemberRecord
    public internal(set) var members: [NodeID: Member] = [:]
    var memberIDs: [NodeID] = []
    var memberIndex: [NodeID: Int] = [:]
    var byKey: [UInt64: NodeID] = [:]
    /// Members by digest key, sorted; rebuilt only after the member set changes.
    var sortedKeys: [(key: UInt64, id: NodeID)] = []
    var sortedKeysDirty = false
    /// Pings sent to dead members to see whether they were only cut off.
    var reconnectPings: [UInt32: NodeID] = [:]

    var probeOrder: [NodeID] = []
    var probeCursor = 0
    var probe: PendingProbe?
    var relays: [UInt32: Relay] = [:]
    var seq: UInt32
    var syncSession: UInt32

    var nextProbeAt: Instant
    var nextGossipAt: Instant
    var nextPushPullAt: Instant
    var nextRejoinAt: Instant = .distantFuture
    var nextReconnectAt: Instant
    var nextReapAt: Instant

    var suspects: Set<NodeID> = []
    /// Members dead or left: the only ones `reap` must look at.
    var down: Set<NodeID> = []
    /// Members that left and were forgotten: the incarnation of their leaving, until
    /// `deadMemberRetention` after it (in no digest; `applyAlive` refuses older records).
    var tombstones: [NodeID: (incarnation: UInt64, since: Instant)] = [:]
    /// The tombstones in the order they were made, with when (`reap` drops them in order).
    var tombstoneQueue: [(node: NodeID, since: Instant)] = []
    var tombstoneHead = 0
    var broadcasts = BroadcastQueue()
    public private(set) var seeds: [Endpoint] = []
    /// Whether a seed has shown that it knows this node (its digest holds this node's
    /// record) since `join`: until then the node tries its seeds again, even once other
    /// members know it (they may be joiners as cut off as itself, or the seed may have
    /// answered the digest but lost the announcement).
    var seedKnowsMe = false
    var rejoinDelay = Span.zero
    public internal(set) var awareness = 0
    public private(set) var leaving = false
    public internal(set) var counters = GossipCounters()

    struct PendingProbe: Sendable {
        var target: NodeID
        var seq: UInt32
        var indirectAt: Instant
        var deadline: Instant
        var indirectSent = false
        var expectedNacks = 0
        var nacks = 0
    }

    struct Relay: Sendable {
        var requester: Endpoint
        var requesterSeq: UInt32
        var nackAt: Instant
        var expires: Instant
        var nackSent = false
    }

    /// - Parameters:
    ///   - me: this node's record (it is signed here).
    ///   - seed: seeds this node's randomness (the shell passes system randomness; the simulator a seeded value).
    public init(me: MemberRecord, settings: GossipSettings = .lan, auth: any RecordAuthenticator, seed: UInt64, now: Instant) {
        self.settings = settings
        self.auth = auth
        rng = SeededRandom(seed: seed)
        var record = me
        record.sign(with: auth)
        self.me = record
        seq = UInt32(truncatingIfNeeded: rng.next())
        syncSession = UInt32(truncatingIfNeeded: rng.next())
        // Spread the first ticks so that nodes started together do not probe in lockstep.
        nextProbeAt = now + settings.probeInterval * (Double(rng.next() % 1000) / 1000)
        nextGossipAt = now + settings.gossipInterval * (Double(rng.next() % 1000) / 1000)
        // A first anti-entropy round soon after start repairs whatever the join exchange
        // lost (memberlist runs that exchange over TCP; ours is UDP).
        nextPushPullAt = now + settings.rejoinInterval * (1 + Double(rng.next() % 1000) / 1000)
        nextReapAt = now + .seconds(1)
        nextReconnectAt = now + settings.reconnectInterval
    }

    // MARK: - Views

    public var memberCount: Int { members.count + 1 }
    public var liveCount: Int { members.values.reduce(1) { $0 + ($1.status <= .suspect ? 1 : 0) } }
    public func member(_ id: NodeID) -> Member? { members[id] }
    public var pendingBroadcasts: Int { broadcasts.count }

    /// The earliest time `tick` has work to do.
    public var nextDeadline: Instant {
        var d = Swift.min(nextProbeAt, nextPushPullAt, nextReapAt, nextRejoinAt, nextReconnectAt)
        if !broadcasts.isEmpty { d = Swift.min(d, nextGossipAt) }
        if let p = probe { d = Swift.min(d, p.indirectSent ? p.deadline : p.indirectAt) }
        for r in relays.values { d = Swift.min(d, r.nackSent ? r.expires : r.nackAt) }
        for id in suspects {
            if let s = members[id]?.suspicion { d = Swift.min(d, s.deadline) }
        }
        return d
    }

    var retransmitLimit: Int { settings.retransmitLimit(members: memberCount) }

    // MARK: - Commands

    /// Joins through `seeds`: announces this node to them and asks each for its digest.
    /// Repeats every `rejoinInterval` while no other member is alive, and until a seed's
    /// digest shows that it knows this node, backing off (to 30 s) once others know it: a
    /// joiner whose first datagrams were lost may be found meanwhile only by later joiners
    /// that went through it, and without its seeds they would form an island that never
    /// meets the mesh; and a seed that answered the digest may have lost the announcement.
    public mutating func join(seeds: [Endpoint], now: Instant) -> [GossipOutput] {
        self.seeds = seeds
        seedKnowsMe = false
        rejoinDelay = settings.rejoinInterval
        var out: [GossipOutput] = []
        contactSeeds(now: now, &out)
        return out
    }

    mutating func contactSeeds(now: Instant, _ out: inout [GossipOutput]) {
        for s in seeds {
            send(.gossip(updates: [.alive(me)]), to: s, &out)
            sendDigest(to: s, reply: false, &out)
        }
        nextRejoinAt = seeds.isEmpty ? .distantFuture : now + rejoinDelay
    }

    /// Announces a graceful departure: a signed record marked `left`, queued for gossip and
    /// pushed directly to a few members, or with `everyone` to every member (a leave for
    /// good, whose RELEASE must not reach heirs that have not heard: dissemination alone
    /// took seconds at 40 members). The shell keeps ticking briefly to let it spread.
    public mutating func leave(now: Instant, everyone: Bool = false) -> [GossipOutput] {
        var out: [GossipOutput] = []
        guard !leaving else { return out }
        leaving = true
        me.incarnation &+= 1
        me.left = true
        me.sign(with: auth)
        broadcasts.enqueue(.alive(me))
        let to = everyone ? memberIDs.filter { members[$0].map { $0.status <= .suspect } ?? false }
                          : randomMembers(count: settings.gossipNodes * 2, excluding: nil, now: now)
        for id in to {
            if let ep = members[id]?.bestEndpoint { send(.gossip(updates: [.alive(me)]), to: ep, &out) }
        }
        return out
    }

    /// Loads records known from before (the daemon's persisted peers, or a simulation that
    /// starts from a settled mesh) as alive members, without gossiping them: news they are
    /// not, and anti-entropy corrects whatever is stale. Unverifiable records are skipped.
    public mutating func restore(_ records: [MemberRecord], now: Instant) {
        for rec in records where rec.node != me.node && members[rec.node] == nil && !rec.left {
            guard rec.isValid(using: auth) else { counters.badSignatures += 1; continue }
            insert(Member(record: rec, status: .alive, statusIncarnation: rec.incarnation, statusSince: now,
                          lastHeard: nil, observedEndpoint: nil, suspicion: nil))
        }
    }

    /// Replaces this node's advertised endpoints or name (a new incarnation, gossiped).
    public mutating func updateSelf(name: String? = nil, endpoints: [Endpoint]? = nil) {
        if let name { me.name = name }
        if let endpoints { me.endpoints = Array(endpoints.prefix(MemberRecord.endpointLimit)) }
        me.incarnation &+= 1
        me.sign(with: auth)
        broadcasts.enqueue(.alive(me))
    }

    // MARK: - Input: a packet

    public mutating func receive(_ packet: GossipPacket, from source: Endpoint, now: Instant) -> [GossipOutput] {
        var out: [GossipOutput] = []
        let sender = packet.sender
        guard sender != me.node else { return out }
        counters.messagesIn += 1
        for u in packet.message.updates { apply(u, now: now, &out) }
        if var m = members[sender] {
            m.lastHeard = now
            m.observedEndpoint = source
            members[sender] = m
        }
        switch packet.message {
        case .ping(let s, let target, _):
            guard target == me.node else {
                counters.misdirectedPings += 1
                return out
            }
            send(.ack(seq: s, updates: piggyback(for: sender)), to: source, &out)
        case .ack(let s, _):
            if var p = probe, p.seq == s {
                probe = nil
                p.deadline = now
                probeSucceeded(p, now: now)
            } else if reconnectPings.removeValue(forKey: s) != nil {
                // A member we hold dead answered: it was only cut off. Merge views.
                sendDigest(to: source, reply: false, &out)
            } else if let r = relays.removeValue(forKey: s) {
                send(.ack(seq: r.requesterSeq, updates: piggyback(for: nil)), to: r.requester, &out)
            } else {
                counters.unknownAcks += 1
            }
        case .pingReq(let s, let target, let endpoint, _):
            if target == me.node {
                send(.ack(seq: s, updates: []), to: source, &out)
                break
            }
            let mySeq = nextSeq()
            relays[mySeq] = Relay(requester: source, requesterSeq: s, nackAt: now + settings.probeTimeout * 0.8,
                                  expires: now + settings.probeTimeout)
            send(.ping(seq: mySeq, target: target, updates: piggyback(for: target)), to: endpoint, &out)
        case .nack(let s):
            if probe?.seq == s { probe!.nacks += 1 }
        case .gossip:
            break
        case .sync(let page):
            handleSync(page, from: source, now: now, &out)
        }
        return out
    }

    // MARK: - Input: time

    public mutating func tick(now: Instant) -> [GossipOutput] {
        var out: [GossipOutput] = []
        // The probe under way.
        if var p = probe {
            if !p.indirectSent, now >= p.indirectAt {
                p.indirectSent = true
                if let ep = members[p.target]?.bestEndpoint {
                    // A second direct try alongside the indirect ones: memberlist's TCP fallback
                    // plays this part; over UDP alone it cuts false suspicions under loss ~10×.
                    send(.ping(seq: p.seq, target: p.target, updates: piggyback(for: p.target)), to: ep, &out)
                    let helpers = randomMembers(count: settings.indirectChecks, excluding: p.target, now: now, aliveOnly: true)
                    for h in helpers {
                        guard let hep = members[h]?.bestEndpoint else { continue }
                        send(.pingReq(seq: p.seq, target: p.target, endpoint: ep, updates: piggyback(for: h)), to: hep, &out)
                        counters.indirectProbes += 1
                    }
                    p.expectedNacks = helpers.count
                }
                probe = p
            }
            if now >= p.deadline {
                probe = nil
                probeFailed(p, now: now, &out)
            }
        }
        if probe == nil, now >= nextProbeAt { startProbe(now: now, &out) }

        // Indirect probes this node relays.
        // Sorted, as everywhere outputs depend on order: the simulator replays runs from a seed,
        // and Swift randomises dictionary order per process.
        for s in relays.keys.sorted() {
            let r = relays[s]!
            if now >= r.expires {
                relays[s] = nil
            } else if !r.nackSent, now >= r.nackAt {
                relays[s]!.nackSent = true
                send(.nack(seq: r.requesterSeq), to: r.requester, &out)
            }
        }

        // Suspicions that ran out.
        for id in suspects.sorted() {
            guard let m = members[id], let s = m.suspicion else { continue }
            if now >= s.deadline {
                apply(.dead(target: id, incarnation: m.statusIncarnation, from: me.node), now: now, &out)
            }
        }

        // A gossip round.
        if now >= nextGossipAt {
            nextGossipAt = now + settings.gossipInterval
            if !broadcasts.isEmpty {
                for id in randomMembers(count: settings.gossipNodes, excluding: nil, now: now) {
                    let updates = piggyback(for: id)
                    if updates.isEmpty { break }
                    if let ep = members[id]?.bestEndpoint { send(.gossip(updates: updates), to: ep, &out) }
                }
            }
        }

        // Anti-entropy.
        if now >= nextPushPullAt {
            nextPushPullAt = now + settings.scaledPushPullInterval(members: memberCount)
            if let id = randomMembers(count: 1, excluding: nil, now: now, aliveOnly: true).first, let ep = members[id]?.bestEndpoint {
                sendDigest(to: ep, reply: false, &out)
            }
        }

        // Reconnect: a dead member may only have been cut off from us.
        if now >= nextReconnectAt {
            nextReconnectAt = now + settings.reconnectInterval
            reconnectPings.removeAll()
            if let id = randomDeadMember(), let ep = members[id]?.bestEndpoint {
                let s = nextSeq()
                reconnectPings[s] = id
                send(.ping(seq: s, target: id, updates: []), to: ep, &out)
            }
        }

        // Alone, or no seed has answered yet: try the seeds again.
        if now >= nextRejoinAt {
            if seedKnowsMe {
                nextRejoinAt = .distantFuture
            } else {
                rejoinDelay = liveCount > 1 ? Swift.min(rejoinDelay * 2, .seconds(30)) : settings.rejoinInterval
                contactSeeds(now: now, &out)
            }
        }

        if now >= nextReapAt {
            nextReapAt = now + .seconds(1)
            reap(now: now, &out)
        }
        return out
    }

    // MARK: - Helpers

    mutating func piggyback(for target: NodeID?) -> [Update] {
        var budget = settings.maxPayloadSize - GossipPacket.overhead
        var extra: [Update] = []
        // Buddy system: a suspect learns of its suspicion from the probe itself.
        if let t = target, let m = members[t], m.status == .suspect {
            let u = Update.suspect(target: t, incarnation: m.statusIncarnation, from: me.node)
            extra.append(u)
            budget -= u.wireBytes.count
        }
        return extra + broadcasts.take(budget: budget, limit: retransmitLimit)
    }

    mutating func send(_ message: GossipMessage, to endpoint: Endpoint, _ out: inout [GossipOutput]) {
        counters.messagesOut += 1
        out.append(.send(GossipPacket(sender: me.node, message: message), to: endpoint))
    }

    mutating func nextSeq() -> UInt32 {
        seq &+= 1
        return seq
    }

    /// Up to `count` distinct random members to talk to: alive or suspect, or (unless
    /// `aliveOnly`) dead for less than gossipToTheDeadTime.
    mutating func randomMembers(count: Int, excluding: NodeID?, now: Instant, aliveOnly: Bool = false) -> [NodeID] {
        var picked: [NodeID] = []
        guard !memberIDs.isEmpty, count > 0 else { return picked }
        var attempts = 0
        while picked.count < count, attempts < count * 4 + 8 {
            attempts += 1
            let id = memberIDs[Int(rng.next() % UInt64(memberIDs.count))]
            guard id != excluding, !picked.contains(id), let m = members[id] else { continue }
            let ok = m.status <= .suspect
                || (!aliveOnly && m.status == .dead && now - m.statusSince < settings.gossipToTheDeadTime)
            if ok { picked.append(id) }
        }
        return picked
    }

    mutating func randomDeadMember() -> NodeID? {
        let dead = down.filter { members[$0]?.status == .dead }.sorted()
        guard !dead.isEmpty else { return nil }
        return dead[Int(rng.next() % UInt64(dead.count))]
    }

    mutating func shuffle(_ a: inout [NodeID]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }

    mutating func ensureSortedKeys() {
        guard sortedKeysDirty else { return }
        sortedKeys = memberIDs.map { ($0.digestKey, $0) }
        sortedKeys.sort { $0.key < $1.key }
        sortedKeysDirty = false
    }

    /// Index of the first sorted key ≥ `key`.
    func lowerBound(_ key: UInt64) -> Int {
        sortedKeys.partitionPoint { $0.key < key }
    }

    mutating func insert(_ m: Member) {
        sortedKeysDirty = true
        members[m.node] = m
        memberIndex[m.node] = memberIDs.count
        memberIDs.append(m.node)
        byKey[m.node.digestKey] = m.node
        // memberlist puts a new member at a random place in the probe order.
        let at = probeOrder.isEmpty ? 0 : Int(rng.next() % UInt64(probeOrder.count + 1))
        probeOrder.insert(m.node, at: at)
        if at < probeCursor { probeCursor += 1 }
    }

    mutating func remove(_ id: NodeID) {
        sortedKeysDirty = true
        members[id] = nil
        suspects.remove(id)
        down.remove(id)
        byKey[id.digestKey] = nil
        if let i = memberIndex.removeValue(forKey: id) {
            let last = memberIDs.removeLast()
            if i < memberIDs.count {
                memberIDs[i] = last
                memberIndex[last] = i
            }
        }
    }

    mutating func reap(now: Instant, _ out: inout [GossipOutput]) {
        reapTombstones(now: now)
        guard !down.isEmpty else { return }
        var gone: [NodeID] = []
        for id in down.sorted() {
            guard let m = members[id], m.status >= .dead else { continue }
            let retention = m.status == .left ? settings.leftMemberRetention : settings.deadMemberRetention
            guard now - m.statusSince > retention else { continue }
            gone.append(id)
        }
        for id in gone {
            if let m = members[id], m.status == .left {
                tombstones[id] = (m.record.incarnation, m.statusSince)
                tombstoneQueue.append((id, m.statusSince))
            }
            remove(id)
            out.append(.event(.forgotten(id)))
        }
    }

    /// Drops tombstones older than `deadMemberRetention` (made in time order).
    mutating func reapTombstones(now: Instant) {
        while tombstoneHead < tombstoneQueue.count, now - tombstoneQueue[tombstoneHead].since > settings.deadMemberRetention {
            let t = tombstoneQueue[tombstoneHead]
            // Unless the member came back and left again since (a newer tombstone).
            if tombstones[t.node]?.since == t.since { tombstones[t.node] = nil }
            tombstoneHead += 1
        }
        if tombstoneHead > 1024, tombstoneHead * 2 > tombstoneQueue.count {
            tombstoneQueue.removeFirst(tombstoneHead)
            tombstoneHead = 0
        }
    }
}
