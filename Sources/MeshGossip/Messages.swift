import MeshCore
import MeshWire

/// A member's status as this node believes it.
public enum MemberStatus: UInt8, Sendable, Comparable, CustomStringConvertible, CaseIterable {
    case alive = 0, suspect = 1, dead = 2, left = 3

    public static func < (l: MemberStatus, r: MemberStatus) -> Bool { l.rawValue < r.rawValue }
    public var description: String { ["alive", "suspect", "dead", "left"][Int(rawValue)] }
}

/// One piece of membership news, piggybacked on probes and gossip.
public enum Update: Hashable, Sendable {
    /// A signed record: the member is alive at this incarnation (or has left, if the record says so).
    case alive(MemberRecord)
    /// `from` suspects `target` at `incarnation`.
    case suspect(target: NodeID, incarnation: UInt64, from: NodeID)
    /// `from` declares `target` dead at `incarnation`.
    case dead(target: NodeID, incarnation: UInt64, from: NodeID)

    public var subject: NodeID {
        switch self {
        case .alive(let r): return r.node
        case .suspect(let t, _, _), .dead(let t, _, _): return t
        }
    }
}

extension Update: WireCodable {
    public init(from r: inout WireReader) throws(WireError) {
        let start = r
        let kind = try r.readUInt8("update kind")
        switch kind {
        case 1: self = .alive(try r.read(MemberRecord.self))
        case 2: self = .suspect(target: try r.read(NodeID.self), incarnation: try r.readUInt64("incarnation"), from: try r.read(NodeID.self))
        case 3: self = .dead(target: try r.read(NodeID.self), incarnation: try r.readUInt64("incarnation"), from: try r.read(NodeID.self))
        default:
            r = start
            throw .invalidValue(field: "update kind", reason: "unknown kind \(kind)")
        }
    }

    public func encode(to w: inout WireWriter) {
        switch self {
        case .alive(let rec):
            w.writeUInt8(1)
            w.write(rec)
        case .suspect(let t, let i, let f):
            w.writeUInt8(2); w.write(t); w.writeUInt64(i); w.write(f)
        case .dead(let t, let i, let f):
            w.writeUInt8(3); w.write(t); w.writeUInt64(i); w.write(f)
        }
    }
}

/// One line of an anti-entropy digest: a member (by the first 8 bytes of its ID), the
/// incarnation and status the sender knows.
public struct DigestEntry: Hashable, Sendable, WireCodable {
    public var key: UInt64
    public var incarnation: UInt64
    public var status: MemberStatus

    public init(key: UInt64, incarnation: UInt64, status: MemberStatus) {
        self.key = key
        self.incarnation = incarnation
        self.status = status
    }

    public init(from r: inout WireReader) throws(WireError) {
        let start = r
        key = try r.readUInt64("digest key")
        incarnation = try r.readUInt64("digest incarnation")
        let s = try r.readUInt8("digest status")
        guard let st = MemberStatus(rawValue: s) else {
            r = start
            throw .invalidValue(field: "digest status", reason: "unknown status \(s)")
        }
        status = st
    }

    public func encode(to w: inout WireWriter) {
        w.writeUInt64(key)
        w.writeUInt64(incarnation)
        w.writeUInt8(status.rawValue)
    }

    public static let size = 17

    /// Whether this entry describes newer knowledge than `other` (higher incarnation, or the
    /// same incarnation and a later status).
    public func isNewer(than other: DigestEntry) -> Bool {
        (incarnation, status.rawValue) > (other.incarnation, other.status.rawValue)
    }
}

/// One page of a push-pull digest: every member whose key lies in `lo...hi`, sorted.
public struct SyncPage: Hashable, Sendable {
    public var session: UInt32
    public var reply: Bool
    public var last: Bool
    public var lo: UInt64
    public var hi: UInt64
    public var entries: [DigestEntry]
}

/// Every gossip message. Each travels inside a sealed envelope that names its sender.
public enum GossipMessage: Hashable, Sendable {
    case ping(seq: UInt32, target: NodeID, updates: [Update])
    case ack(seq: UInt32, updates: [Update])
    case pingReq(seq: UInt32, target: NodeID, endpoint: Endpoint, updates: [Update])
    case nack(seq: UInt32)
    case gossip(updates: [Update])
    case sync(SyncPage)

    public var updates: [Update] {
        switch self {
        case .ping(_, _, let u), .ack(_, let u), .pingReq(_, _, _, let u), .gossip(let u): return u
        case .nack, .sync: return []
        }
    }

    public static let updateLimit = 255
    public static let digestLimit = 1024
}

/// A gossip packet's plaintext: who sent it, and the message.
public struct GossipPacket: Hashable, Sendable, WireCodable {
    public var sender: NodeID
    public var message: GossipMessage

    public init(sender: NodeID, message: GossipMessage) {
        self.sender = sender
        self.message = message
    }

    public init(from r: inout WireReader) throws(WireError) {
        sender = try r.read(NodeID.self)
        let kind = try r.readUInt8("gossip kind")
        func updates(_ r: inout WireReader) throws(WireError) -> [Update] {
            try r.readArray(of: Update.self, .u8, limit: GossipMessage.updateLimit, minimumElementSize: 41, "updates")
        }
        switch kind {
        case 1: message = .ping(seq: try r.readUInt32("seq"), target: try r.read(NodeID.self), updates: try updates(&r))
        case 2: message = .ack(seq: try r.readUInt32("seq"), updates: try updates(&r))
        case 3:
            message = .pingReq(seq: try r.readUInt32("seq"), target: try r.read(NodeID.self), endpoint: try r.read(Endpoint.self),
                               updates: try updates(&r))
        case 4: message = .nack(seq: try r.readUInt32("seq"))
        case 5: message = .gossip(updates: try updates(&r))
        case 6:
            let session = try r.readUInt32("sync session")
            let flags = try r.readUInt8("sync flags")
            guard flags & ~0x03 == 0 else { throw .invalidValue(field: "sync flags", reason: "unknown flags \(flags)") }
            let lo = try r.readUInt64("sync lo"), hi = try r.readUInt64("sync hi")
            guard lo <= hi else { throw .invalidValue(field: "sync range", reason: "lo > hi") }
            let entries = try r.readArray(of: DigestEntry.self, .u16, limit: GossipMessage.digestLimit,
                                          minimumElementSize: DigestEntry.size, "digest")
            message = .sync(SyncPage(session: session, reply: flags & 1 != 0, last: flags & 2 != 0, lo: lo, hi: hi, entries: entries))
        default:
            throw .invalidValue(field: "gossip kind", reason: "unknown kind \(kind)")
        }
    }

    public func encode(to w: inout WireWriter) {
        w.write(sender)
        switch message {
        case .ping(let seq, let target, let u):
            w.writeUInt8(1); w.writeUInt32(seq); w.write(target); w.writeArray(.u8, u)
        case .ack(let seq, let u):
            w.writeUInt8(2); w.writeUInt32(seq); w.writeArray(.u8, u)
        case .pingReq(let seq, let target, let ep, let u):
            w.writeUInt8(3); w.writeUInt32(seq); w.write(target); w.write(ep); w.writeArray(.u8, u)
        case .nack(let seq):
            w.writeUInt8(4); w.writeUInt32(seq)
        case .gossip(let u):
            w.writeUInt8(5); w.writeArray(.u8, u)
        case .sync(let p):
            w.writeUInt8(6); w.writeUInt32(p.session)
            w.writeUInt8((p.reply ? 1 : 0) | (p.last ? 2 : 0))
            w.writeUInt64(p.lo); w.writeUInt64(p.hi)
            w.writeArray(.u16, p.entries)
        }
    }

    /// Bytes of a message with no updates, per kind (for packing updates under the size budget).
    public static let overhead = 32 + 1 + 4 + 32 + 19 + 1
}

