import MeshCore

/// A message handed to `Messenger.send`, for matching its acknowledgement or failure.
public struct MessageID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public static func < (l: MessageID, r: MessageID) -> Bool { l.raw < r.raw }
    public var description: String { "#\(raw)" }
}

public struct MessengerSettings: Sendable {
    public var maxMessageSize = 1 << 20
    /// Message bytes per fragment: with our headers and the tunnel's, a datagram stays
    /// under 1,280 bytes (IPv6's minimum MTU).
    public var fragmentSize = 1200
    /// Fragments in flight per peer, and how far ahead of the next expected fragment a
    /// receiver buffers (the bound on reassembly memory besides the message itself).
    public var window = 256
    /// Bytes waiting (queued or unacknowledged) per peer before `send` refuses more.
    public var maxQueuedBytes = 16 << 20
    public var initialRTO: Span = .milliseconds(300)
    public var minRTO: Span = .milliseconds(20)
    public var maxRTO: Span = .seconds(3)
    public init() {}
}

public enum MessageFailure: Error, Sendable, Equatable {
    /// Not acknowledged before its deadline.
    case timedOut
    /// No session could be made, or the peer stopped being a live member.
    case unreachable
}

public enum MessengerOutput: Sendable {
    /// A payload for the tunnel to carry to `to`.
    case transmit([UInt8], to: NodeID)
    /// A whole message from `from`, in order, once.
    case delivered(from: NodeID, [UInt8])
    case acknowledged(MessageID, to: NodeID)
    case failed(MessageID, to: NodeID, MessageFailure)
}

public struct MessengerCounters: Sendable, Equatable, Codable {
    public var messagesSent = 0
    public var messagesAcknowledged = 0
    public var messagesFailed = 0
    public var messagesDelivered = 0
    public var fragmentsSent = 0
    public var retransmits = 0
    /// Fragments or messages received again (a lost acknowledgement), dropped.
    public var duplicates = 0
    /// Fragments that break the framing rules (a member misbehaving), dropped.
    public var malformed = 0
    public init() {}
}

/// Reliable, ordered, exactly-once messages over tunnel payloads, sans-I/O.
///
/// Per peer and direction, one *stream* of fragments numbered from 0: a sliding window
/// of in-flight fragments, cumulative acknowledgements with a whole-window selective
/// bitmap, retransmission on an RFC 6298 timer and on holes the bitmap shows. A message
/// is acknowledged when every fragment up to its last is. Streams are named (epoch, generation):
/// the epoch is random per sender run, the generation rises whenever the sender starts the
/// stream again (a message timed out, the peer restarted). Messages carry a number that
/// rises per peer, so a message sent again on a new generation is delivered once.
/// docs/handshake.md ("Messages") gives the framing.
public struct Messenger: Sendable {
    static let kindData: UInt8 = 1, kindAck: UInt8 = 2
    static let flagFirst: UInt8 = 1, flagLast: UInt8 = 2
    static let dataHeader = 1 + 8 + 4 + 4 + 1
    static let firstHeader = 8 + 4
    /// Kind, epoch, generation, cumulative, echo, then one bit per fragment after the
    /// cumulative point, for the whole window.
    static let sackWords = 4
    static let ackSize = 1 + 8 + 4 + 4 + 4 + 8 * sackWords

    struct Message: Sendable {
        let id: MessageID
        let number: UInt64
        let bytes: [UInt8]
        let deadline: Instant
        var lastSeq: UInt32 = 0
    }

    struct Fragment: Sendable {
        var packet: [UInt8]
        var lastSent: Instant
        var sends = 1
        var acked = false
    }

    struct Outbound: Sendable {
        var generation: UInt32 = 0
        var nextNumber: UInt64 = 1
        var nextSeq: UInt32 = 0
        /// Messages not yet wholly cut into fragments; the first may be partly cut.
        var queue: [Message] = []
        var cut = 0
        /// Messages wholly in flight, waiting for their last fragment's acknowledgement.
        var awaiting: [Message] = []
        /// Unacknowledged fragments: `unacked[i]` has sequence number `base + i`.
        var unacked: [Fragment] = []
        var base: UInt32 = 0
        var queuedBytes = 0
        var srtt: Span?
        var rttvar = Span.zero
        var rto: Span
    }

    struct Inbound: Sendable {
        var epoch: UInt64
        var generation: UInt32
        var expected: UInt32 = 0
        var buffer: [UInt32: [UInt8]] = [:]
        var assembling: [UInt8]?
        var total = 0
        var number: UInt64 = 0
        /// The highest message number delivered from this epoch.
        var delivered: UInt64 = 0
        var retired: [UInt64] = []
        /// The fragment that arrived last, echoed in the acknowledgement for timing.
        var latest: UInt32 = 0
    }

    public let settings: MessengerSettings
    let epoch: UInt64
    var nextID: UInt64 = 1
    var outbound: [NodeID: Outbound] = [:]
    var inbound: [NodeID: Inbound] = [:]
    /// Peers whose data arrived since the last `takeAcks`: one acknowledgement each covers
    /// a whole batch of datagrams read together.
    var acksOwed: Set<NodeID> = []
    public private(set) var counters = MessengerCounters()

    public init(settings: MessengerSettings = MessengerSettings(), epoch: UInt64) {
        self.settings = settings
        self.epoch = epoch
    }

    public enum SendError: Error, Sendable, Equatable {
        case tooLarge(limit: Int)
        case queueFull(limit: Int)
    }

    /// Queues `bytes` for `peer`; it is acknowledged or fails by `deadline`.
    public mutating func send(_ bytes: [UInt8], to peer: NodeID, deadline: Instant, now: Instant)
        -> (Result<MessageID, SendError>, [MessengerOutput]) {
        guard bytes.count <= settings.maxMessageSize else { return (.failure(.tooLarge(limit: settings.maxMessageSize)), []) }
        guard let id = enqueue(bytes, to: peer, deadline: deadline) else {
            return (.failure(.queueFull(limit: settings.maxQueuedBytes)), [])
        }
        counters.messagesSent += 1
        return (.success(id), fill(peer, now: now))
    }

    /// Appends a message to the peer's queue; nil if the queue is full. A function of its
    /// own so that its copy of the peer's state is gone before `fill` changes the queue:
    /// a second reference would make every change copy the whole queue (copy on write).
    mutating func enqueue(_ bytes: [UInt8], to peer: NodeID, deadline: Instant) -> MessageID? {
        let had = outbound.removeValue(forKey: peer)
        let known = had != nil
        var o = had ?? Outbound(rto: settings.initialRTO)
        guard o.queuedBytes + bytes.count <= settings.maxQueuedBytes else {
            if known { outbound[peer] = o }
            return nil
        }
        let id = MessageID(raw: nextID)
        nextID += 1
        o.queue.append(Message(id: id, number: o.nextNumber, bytes: bytes, deadline: deadline))
        o.nextNumber += 1
        o.queuedBytes += bytes.count
        outbound[peer] = o
        return id
    }

    /// Messages to `peer` not yet acknowledged.
    public func pending(to peer: NodeID) -> Int { (outbound[peer]?.queue.count ?? 0) + (outbound[peer]?.awaiting.count ?? 0) }

    /// Cuts queued messages into fragments while the window has room.
    mutating func fill(_ peer: NodeID, now: Instant) -> [MessengerOutput] {
        // 2^32 fragments on one stream (terabytes): start the next generation before the
        // sequence numbers could wrap.
        if let o = outbound[peer], o.nextSeq > UInt32.max - UInt32(4 * settings.window), o.queue.count + o.awaiting.count > 0, o.cut == 0 {
            return restart(peer, now: now)
        }
        guard var o = outbound.removeValue(forKey: peer) else { return [] }
        defer { outbound[peer] = o }
        var out: [MessengerOutput] = []
        while o.unacked.count < settings.window, !o.queue.isEmpty {
            let m = o.queue[0]
            let first = o.cut == 0
            let end = min(m.bytes.count, o.cut + settings.fragmentSize)
            let last = end == m.bytes.count
            var p = [UInt8]()
            p.reserveCapacity(Self.dataHeader + Self.firstHeader + end - o.cut)
            p.append(Self.kindData)
            appendBE(&p, epoch)
            appendBE(&p, o.generation)
            appendBE(&p, o.nextSeq)
            p.append((first ? Self.flagFirst : 0) | (last ? Self.flagLast : 0))
            if first {
                appendBE(&p, m.number)
                appendBE(&p, UInt32(m.bytes.count))
            }
            p += m.bytes[o.cut..<end]
            o.unacked.append(Fragment(packet: p, lastSent: now))
            out.append(.transmit(p, to: peer))
            counters.fragmentsSent += 1
            o.cut = end
            if last {
                var done = o.queue.removeFirst()
                done.lastSeq = o.nextSeq
                o.awaiting.append(done)
                o.cut = 0
            }
            o.nextSeq += 1
        }
        return out
    }

    /// One payload from the tunnel.
    public mutating func receive(_ payload: [UInt8], from peer: NodeID, now: Instant) -> [MessengerOutput] {
        guard let kind = payload.first else { return [] }
        switch kind {
        case Self.kindData: return receiveData(payload, from: peer)
        case Self.kindAck: return receiveAck(payload, from: peer, now: now)
        default:
            counters.malformed += 1
            return []
        }
    }

    mutating func receiveData(_ p: [UInt8], from peer: NodeID) -> [MessengerOutput] {
        guard p.count >= Self.dataHeader else { counters.malformed += 1; return [] }
        let epoch = readBE64(p, 1), generation = readBE32(p, 9), seq = readBE32(p, 13)
        // Taken out of the dictionary while it changes (no copy of its buffer per packet).
        var s = inbound.removeValue(forKey: peer) ?? Inbound(epoch: epoch, generation: generation)
        if epoch != s.epoch {
            guard !s.retired.contains(epoch) else {  // a late packet from the sender's last run
                inbound[peer] = s
                return []
            }
            s = Inbound(epoch: epoch, generation: generation, retired: Array((s.retired + [s.epoch]).suffix(4)))
        } else if generation < s.generation {
            inbound[peer] = s
            return []
        } else if generation > s.generation {
            s = Inbound(epoch: epoch, generation: generation, delivered: s.delivered, retired: s.retired)
        }
        var out: [MessengerOutput] = []
        s.latest = seq
        if seq < s.expected || s.buffer[seq] != nil {
            counters.duplicates += 1
        } else if seq - s.expected < UInt32(settings.window) {
            s.buffer[seq] = p
            while let f = s.buffer.removeValue(forKey: s.expected) {
                s.expected += 1
                if let message = consume(f, into: &s) { out.append(.delivered(from: peer, message)) }
            }
        }
        inbound[peer] = s
        // Every data fragment is acknowledged, duplicates too (the last acknowledgement may
        // have been lost), by the next `takeAcks`.
        acksOwed.insert(peer)
        return out
    }

    /// The acknowledgements owed: one per peer that sent data since the last call. Call
    /// after each batch of datagrams received (after each one, at the least efficient).
    public mutating func takeAcks() -> [MessengerOutput] {
        guard !acksOwed.isEmpty else { return [] }
        var out: [MessengerOutput] = []
        for peer in acksOwed.sorted() {
            guard let s = inbound[peer] else { continue }
            var ack = [Self.kindAck]
            appendBE(&ack, s.epoch)
            appendBE(&ack, s.generation)
            appendBE(&ack, s.expected)
            appendBE(&ack, s.latest)
            for w in 0..<Self.sackWords {
                var bits: UInt64 = 0
                if !s.buffer.isEmpty {
                    for i in 0..<64 where s.buffer[s.expected &+ 1 &+ UInt32(w * 64 + i)] != nil { bits |= 1 << UInt64(i) }
                }
                appendBE(&ack, bits)
            }
            out.append(.transmit(ack, to: peer))
        }
        acksOwed = []
        return out
    }

    /// Adds an in-order fragment to the message being assembled; returns it when whole and new.
    mutating func consume(_ p: [UInt8], into s: inout Inbound) -> [UInt8]? {
        let flags = p[Self.dataHeader - 1]
        var at = Self.dataHeader
        if flags & Self.flagFirst != 0 {
            guard p.count >= at + Self.firstHeader else { counters.malformed += 1; s.assembling = nil; return nil }
            if s.assembling != nil { counters.malformed += 1 }
            s.number = readBE64(p, at)
            s.total = Int(readBE32(p, at + 8))
            at += Self.firstHeader
            guard s.total <= settings.maxMessageSize else { counters.malformed += 1; s.assembling = nil; return nil }
            s.assembling = []
            s.assembling!.reserveCapacity(s.total)
        }
        guard s.assembling != nil else { counters.malformed += 1; return nil }
        guard s.assembling!.count + p.count - at <= s.total else { counters.malformed += 1; s.assembling = nil; return nil }
        s.assembling! += p[at...]
        guard flags & Self.flagLast != 0 else { return nil }
        let message = s.assembling!
        s.assembling = nil
        guard message.count == s.total else { counters.malformed += 1; return nil }
        guard s.number > s.delivered else { counters.duplicates += 1; return nil }
        s.delivered = s.number
        counters.messagesDelivered += 1
        return message
    }

    mutating func receiveAck(_ p: [UInt8], from peer: NodeID, now: Instant) -> [MessengerOutput] {
        guard let out = applyAck(p, from: peer, now: now) else { return [] }
        return out + fill(peer, now: now)
    }

    /// The acknowledgement's effect on the peer's state; nil if it does not apply. Its own
    /// function, as `enqueue`, so that no second reference to the state outlives it.
    mutating func applyAck(_ p: [UInt8], from peer: NodeID, now: Instant) -> [MessengerOutput]? {
        guard p.count == Self.ackSize else { counters.malformed += 1; return nil }
        guard readBE64(p, 1) == epoch else { return nil }
        // Taken out of the dictionary while it changes (no copy of its arrays per ack).
        guard var o = outbound.removeValue(forKey: peer) else { return nil }
        guard readBE32(p, 9) == o.generation else {
            outbound[peer] = o
            return nil
        }
        let cumulative = readBE32(p, 13), echo = readBE32(p, 17)
        guard cumulative <= o.nextSeq else {
            outbound[peer] = o
            counters.malformed += 1
            return nil
        }
        var out: [MessengerOutput] = []
        // Time the round trip of the fragment whose arrival caused this acknowledgement,
        // if it was sent once (Karn) and not already timed.
        let e = Int(echo) - Int(o.base)
        if e >= 0, e < o.unacked.count, o.unacked[e].sends == 1, !o.unacked[e].acked {
            sample(now - o.unacked[e].lastSent, &o)
            o.unacked[e].sends = 2  // timed once only
        }
        if cumulative > o.base {
            let n = Int(cumulative - o.base)
            // Progress ends any backing off.
            if let srtt = o.srtt { o.rto = min(settings.maxRTO, max(settings.minRTO, srtt + o.rttvar * 4)) }
            o.unacked.removeFirst(n)
            o.base = cumulative
            while let m = o.awaiting.first, m.lastSeq < cumulative {
                o.awaiting.removeFirst()
                o.queuedBytes -= m.bytes.count
                counters.messagesAcknowledged += 1
                out.append(.acknowledged(m.id, to: peer))
            }
        }
        var highest: Int?
        sack: for w in 0..<Self.sackWords {
            let bits = readBE64(p, 21 + 8 * w)
            guard bits != 0 else { continue }
            for i in 0..<64 where bits & (1 << UInt64(i)) != 0 {
                // A late acknowledgement may be older than what is already acknowledged.
                let k = w * 64 + i + 1 + Int(cumulative) - Int(o.base)
                guard k >= 0 else { continue }
                guard k < o.unacked.count else { break sack }
                o.unacked[k].acked = true
                highest = k
            }
        }
        // Holes at least 3 below a fragment that arrived are taken as lost once a round
        // trip and its variation have passed (less and reordering looks like loss): resent,
        // each at most once per such wait.
        if let highest, highest >= 3 {
            let wait = o.srtt.map { $0 + o.rttvar * 2 } ?? settings.initialRTO
            for k in 0..<(highest - 2) where !o.unacked[k].acked && now - o.unacked[k].lastSent >= wait {
                o.unacked[k].lastSent = now
                o.unacked[k].sends += 1
                counters.retransmits += 1
                out.append(.transmit(o.unacked[k].packet, to: peer))
            }
        }
        outbound[peer] = o
        return out
    }

    /// RFC 6298 round-trip estimate.
    func sample(_ r: Span, _ o: inout Outbound) {
        if let s = o.srtt {
            let d = s > r ? s - r : r - s
            o.rttvar = o.rttvar * 0.75 + d * 0.25
            o.srtt = s * 0.875 + r * 0.125
        } else {
            o.srtt = r
            o.rttvar = r * 0.5
        }
        o.rto = min(settings.maxRTO, max(settings.minRTO, o.srtt! + o.rttvar * 4))
    }

    // MARK: - Timers and peer changes

    public var nextDeadline: Instant {
        var next = Instant.distantFuture
        for o in outbound.values {
            if let m = o.queue.first { next = min(next, m.deadline) }
            for m in o.awaiting { next = min(next, m.deadline) }
            if let f = o.unacked.first(where: { !$0.acked }) { next = min(next, f.lastSent + o.rto) }
        }
        return next
    }

    /// Retransmits on timeout (backing off) and fails messages past their deadline.
    public mutating func tick(now: Instant) -> [MessengerOutput] {
        var out: [MessengerOutput] = []
        for peer in outbound.keys.sorted() {
            var o = outbound.removeValue(forKey: peer)!
            let expired = (o.awaiting + o.queue).filter { $0.deadline <= now }
            if !expired.isEmpty {
                for m in expired { out.append(.failed(m.id, to: peer, .timedOut)) }
                outbound[peer] = o
                out += restart(peer, now: now, failing: Set(expired.map(\.id)))
                continue
            }
            // On a timeout, send the oldest missing fragment again and back off; the
            // acknowledgement it brings shows (selectively) what else is missing.
            if let k = o.unacked.firstIndex(where: { !$0.acked }), now - o.unacked[k].lastSent >= o.rto {
                o.unacked[k].lastSent = now
                o.unacked[k].sends += 1
                counters.retransmits += 1
                out.append(.transmit(o.unacked[k].packet, to: peer))
                o.rto = min(settings.maxRTO, o.rto * 2)
            }
            outbound[peer] = o
        }
        return out
    }

    /// Starts the stream to `peer` again (a new generation): every message not yet
    /// acknowledged is cut and sent again, minus those in `failing`.
    mutating func restart(_ peer: NodeID, now: Instant, failing: Set<MessageID> = []) -> [MessengerOutput] {
        guard var o = outbound[peer] else { return [] }
        let keep = (o.awaiting + o.queue).filter { !failing.contains($0.id) }
        counters.messagesFailed += o.awaiting.count + o.queue.count - keep.count
        o.generation += 1
        o.nextSeq = 0
        o.base = 0
        o.unacked = []
        o.awaiting = []
        o.cut = 0
        o.queue = keep
        o.queuedBytes = keep.reduce(0) { $0 + $1.bytes.count }
        o.rto = max(o.rto, o.srtt.map { $0 * 2 } ?? settings.initialRTO)
        outbound[peer] = o
        return fill(peer, now: now)
    }

    /// The peer restarted: it has forgotten the stream, so send what is unacknowledged anew.
    public mutating func peerRestarted(_ peer: NodeID, now: Instant) -> [MessengerOutput] {
        restart(peer, now: now)
    }

    /// The peer is gone or cannot be reached: everything waiting for it fails.
    public mutating func peerUnreachable(_ peer: NodeID) -> [MessengerOutput] {
        guard let o = outbound.removeValue(forKey: peer) else { return [] }
        let all = o.awaiting + o.queue
        counters.messagesFailed += all.count
        var keep = Outbound(rto: settings.initialRTO)
        keep.generation = o.generation + 1
        keep.nextNumber = o.nextNumber
        outbound[peer] = keep
        return all.map { .failed($0.id, to: peer, .unreachable) }
    }
}
