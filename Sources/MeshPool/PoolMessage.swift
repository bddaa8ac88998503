import MeshCore
import MeshWire

/// The pool's messages (packet type 0x02, sealed with the mesh gossip key), DHCP-style.
public enum PoolMessage: Hashable, Sendable {
    /// A node without an address asks for one; `requested` is the address it would like.
    case discover(xid: UInt32, requested: UInt32?)
    /// An owner offers `address` and a `share` of its free space, held for `holdMillis`.
    case offer(xid: UInt32, address: UInt32, share: AddressRange?, holdMillis: UInt32)
    /// The node takes the offer (sent to the offerer only).
    case request(xid: UInt32, address: UInt32)
    /// The offerer committed: the signed lease and share grants, with their ancestors.
    case ack(xid: UInt32, grants: [Grant])
    /// The offerer cannot give it (any more).
    case nak(xid: UInt32, reason: NakReason)
    /// The client found the address it was granted held by another (a conflict resolved
    /// against it); sent to the grantor, which logs and counts it. The client asks again.
    case decline(xid: UInt32, address: UInt32)
    /// Grants being spread (new ones, or answers to a digest).
    case grants([Grant])
    /// Anti-entropy: per grantor, how many of its grants the sender holds and the XOR of
    /// their refs, for grantors whose key lies in `lo...hi`.
    case digest(session: UInt32, reply: Bool, last: Bool, lo: UInt64, hi: UInt64, entries: [GrantorDigest])
    /// The sender, successor of a node gone for longer than the reclaim time, asks for a vote
    /// to take what that node holds by grant `holding`, after its grants up to `cutoff`.
    case reclaimAsk(holding: Bytes32, cutoff: UInt64)
    /// A member's signed consent to that reclaim (sent to the successor only).
    case reclaimVote(holding: Bytes32, cutoff: UInt64, vote: ReclaimVote)
    /// History compaction (docs/pool.md): the number of the checkpoint the sender's view is
    /// built on, sent with each digest; a member on a newer one sends it back.
    case checkpointHave(number: UInt64)
    /// One part of an encoded checkpoint (`PoolCheckpoint`, with the signatures it has):
    /// `id` is BLAKE2b-256 of the whole encoding, which is cut into `count` parts. `final`:
    /// signed by members holding a quorum, to move onto; otherwise a proposal to sign.
    case checkpointPart(id: Bytes32, index: UInt16, count: UInt16, final: Bool, bytes: [UInt8])
    /// A member's signature over a proposed checkpoint (to the proposer only).
    case checkpointSign(ref: Bytes32, signature: [UInt8])

    public enum NakReason: UInt8, Sendable, Codable {
        case noSpace = 1, taken = 2, expired = 3, fenced = 4
    }

    public static let grantLimit = 64
    /// At most this many parts to one checkpoint (about 1 MiB).
    public static let partLimit = 1024
    public static let digestLimit = 1024
}

public struct GrantorDigest: Hashable, Sendable, WireCodable {
    public var key: UInt64
    public var count: UInt32
    public var xor: UInt64
    /// The highest seq of this grantor's grants held.
    public var maxSeq: UInt64

    public init(key: UInt64, count: UInt32, xor: UInt64, maxSeq: UInt64) {
        self.key = key
        self.count = count
        self.xor = xor
        self.maxSeq = maxSeq
    }

    public init(from r: inout WireReader) throws(WireError) {
        key = try r.readUInt64("grantor key")
        count = try r.readUInt32("grant count")
        xor = try r.readUInt64("grant xor")
        maxSeq = try r.readUInt64("grant max seq")
    }

    public func encode(to w: inout WireWriter) {
        w.writeUInt64(key)
        w.writeUInt32(count)
        w.writeUInt64(xor)
        w.writeUInt64(maxSeq)
    }

    public static let size = 28
}

/// A pool packet's plaintext: sender, the message, and the sender's Ed25519 signature over
/// both (so a member cannot ask, offer or vote in another's name, nor under a made-up ID).
public struct PoolPacket: Hashable, Sendable, WireCodable {
    public var sender: NodeID
    public var message: PoolMessage
    public var signature: [UInt8]

    public init(sender: NodeID, message: PoolMessage, signature: [UInt8] = [UInt8](repeating: 0, count: 64)) {
        self.sender = sender
        self.message = message
        self.signature = signature
    }

    /// What the signature covers: a domain string, the sender and the message.
    public var signedBytes: [UInt8] {
        var w = WireWriter(capacity: 96)
        w.writeBytes(Array("meshwork pool packet v1".utf8))
        encodeBody(to: &w)
        return w.bytes
    }

    public init(from r: inout WireReader) throws(WireError) {
        sender = try r.read(NodeID.self)
        message = try Self.readMessage(&r)
        signature = try r.readBytes(64, "pool packet signature")
    }

    static func readMessage(_ r: inout WireReader) throws(WireError) -> PoolMessage {
        let message: PoolMessage
        let kind = try r.readUInt8("pool kind")
        func grants(_ r: inout WireReader) throws(WireError) -> [Grant] {
            try r.readArray(of: Grant.self, .u8, limit: PoolMessage.grantLimit, minimumElementSize: 177, "grants")
        }
        switch kind {
        case 1:
            let xid = try r.readUInt32("xid")
            let has = try r.readBool("has requested")
            let req = try r.readUInt32("requested")
            message = .discover(xid: xid, requested: has ? req : nil)
        case 2:
            let xid = try r.readUInt32("xid"), address = try r.readUInt32("address")
            let has = try r.readBool("has share")
            let a = try r.readUInt32("share first"), b = try r.readUInt32("share last")
            guard a <= b else { throw .invalidValue(field: "share", reason: "first > last") }
            message = .offer(xid: xid, address: address, share: has ? AddressRange(a, b) : nil, holdMillis: try r.readUInt32("hold"))
        case 3: message = .request(xid: try r.readUInt32("xid"), address: try r.readUInt32("address"))
        case 4: message = .ack(xid: try r.readUInt32("xid"), grants: try grants(&r))
        case 5:
            let xid = try r.readUInt32("xid")
            let raw = try r.readUInt8("nak reason")
            guard let reason = PoolMessage.NakReason(rawValue: raw) else { throw .invalidValue(field: "nak reason", reason: "unknown \(raw)") }
            message = .nak(xid: xid, reason: reason)
        case 6: message = .grants(try grants(&r))
        case 7:
            let session = try r.readUInt32("session")
            let flags = try r.readUInt8("flags")
            guard flags & ~0x03 == 0 else { throw .invalidValue(field: "digest flags", reason: "unknown flags \(flags)") }
            let lo = try r.readUInt64("lo"), hi = try r.readUInt64("hi")
            guard lo <= hi else { throw .invalidValue(field: "digest range", reason: "lo > hi") }
            let entries = try r.readArray(of: GrantorDigest.self, .u16, limit: PoolMessage.digestLimit, minimumElementSize: GrantorDigest.size, "digest")
            message = .digest(session: session, reply: flags & 1 != 0, last: flags & 2 != 0, lo: lo, hi: hi, entries: entries)
        case 10: message = .decline(xid: try r.readUInt32("xid"), address: try r.readUInt32("address"))
        case 8: message = .reclaimAsk(holding: try r.readBytes32("holding"), cutoff: try r.readUInt64("cutoff"))
        case 9:
            let holding = try r.readBytes32("holding"), cutoff = try r.readUInt64("cutoff")
            message = .reclaimVote(holding: holding, cutoff: cutoff, vote: try r.read(ReclaimVote.self))
        case 11: message = .checkpointHave(number: try r.readUInt64("checkpoint number"))
        case 12:
            let id = try r.readBytes32("checkpoint id")
            let index = try r.readUInt16("part index"), count = try r.readUInt16("part count")
            guard count > 0, count <= PoolMessage.partLimit, index < count else {
                throw .invalidValue(field: "checkpoint part", reason: "part \(index) of \(count)")
            }
            let flags = try r.readUInt8("part flags")
            guard flags & ~1 == 0 else { throw .invalidValue(field: "part flags", reason: "unknown flags \(flags)") }
            let n = Int(try r.readUInt16("part length"))
            message = .checkpointPart(id: id, index: index, count: count, final: flags == 1, bytes: try r.readBytes(n, "part bytes"))
        case 13: message = .checkpointSign(ref: try r.readBytes32("checkpoint ref"), signature: try r.readBytes(64, "checkpoint signature"))
        default:
            throw .invalidValue(field: "pool kind", reason: "unknown kind \(kind)")
        }
        return message
    }

    public func encode(to w: inout WireWriter) {
        encodeBody(to: &w)
        w.writeBytes(signature)
    }

    func encodeBody(to w: inout WireWriter) {
        w.write(sender)
        switch message {
        case .discover(let xid, let req):
            w.writeUInt8(1); w.writeUInt32(xid); w.writeBool(req != nil); w.writeUInt32(req ?? 0)
        case .offer(let xid, let a, let share, let hold):
            w.writeUInt8(2); w.writeUInt32(xid); w.writeUInt32(a); w.writeBool(share != nil)
            w.writeUInt32(share?.first ?? 0); w.writeUInt32(share?.last ?? 0); w.writeUInt32(hold)
        case .request(let xid, let a):
            w.writeUInt8(3); w.writeUInt32(xid); w.writeUInt32(a)
        case .ack(let xid, let g):
            w.writeUInt8(4); w.writeUInt32(xid); w.writeArray(.u8, g)
        case .nak(let xid, let reason):
            w.writeUInt8(5); w.writeUInt32(xid); w.writeUInt8(reason.rawValue)
        case .grants(let g):
            w.writeUInt8(6); w.writeArray(.u8, g)
        case .digest(let session, let reply, let last, let lo, let hi, let entries):
            w.writeUInt8(7); w.writeUInt32(session); w.writeUInt8((reply ? 1 : 0) | (last ? 2 : 0))
            w.writeUInt64(lo); w.writeUInt64(hi); w.writeArray(.u16, entries)
        case .decline(let xid, let a):
            w.writeUInt8(10); w.writeUInt32(xid); w.writeUInt32(a)
        case .reclaimAsk(let holding, let cutoff):
            w.writeUInt8(8); w.writeBytes32(holding); w.writeUInt64(cutoff)
        case .reclaimVote(let holding, let cutoff, let vote):
            w.writeUInt8(9); w.writeBytes32(holding); w.writeUInt64(cutoff); w.write(vote)
        case .checkpointHave(let number):
            w.writeUInt8(11); w.writeUInt64(number)
        case .checkpointPart(let id, let index, let count, let final, let bytes):
            w.writeUInt8(12); w.writeBytes32(id); w.writeUInt16(index); w.writeUInt16(count); w.writeUInt8(final ? 1 : 0)
            w.writeUInt16(UInt16(bytes.count)); w.writeBytes(bytes)
        case .checkpointSign(let ref, let signature):
            w.writeUInt8(13); w.writeBytes32(ref); w.writeBytes(signature)
        }
    }
}
