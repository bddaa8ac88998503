import MeshCore
import MeshCrypto
import MeshWire

/// One change of ownership in the address pool, signed by the node that gives it away.
///
/// "`grantor` hands `range` to `grantee`", holding it by `parent` (the grant that gave
/// `grantor` a range containing `range`). `seq` is the grantor's grant counter: it only
/// grows, and is persisted before an ACK is sent. The genesis grant has no parent and
/// hands the whole pool from the genesis node to itself. A `lease` grant is a single
/// address for its grantee's own use, and is never a parent. A `reclaim` takes what a
/// node gone for longer than the reclaim time still held by `parent`, for its signer (the
/// successor), on the strength of `votes` from members holding most of the pool (or
/// `forced` by hand). A `merge` gathers what its signer still holds by several grants
/// (`parent` and `extraParents`) into one, so that holdings stay few however long the
/// history (docs/pool.md, "Merging holdings"). docs/pool.md has the rules.
public struct Grant: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable, Codable {
        /// Space the grantee may allocate from.
        case space = 1
        /// One address that the grantee uses.
        case lease = 2
        /// What a departed node still held by `parent`, taken over by the signer.
        case reclaim = 3
        /// What the signer still holds by each of its parents, as one holding of space
        /// (its range is the whole pool; it takes only what those parents still hold).
        case merge = 4
    }

    /// At most this many parents in a merge (`parent` and `extraParents`): about 1 KB.
    public static let mergeLimit = 32

    // Every field names the grant (`ref`), which is kept with it: a hash per change of a
    // field, not one per use (refs key every table and every sort of the view).
    public var grantor: NodeID { didSet { refresh() } }
    public var seq: UInt64 { didSet { refresh() } }
    public var parent: Bytes32 { didSet { refresh() } }
    public var range: AddressRange { didSet { refresh() } }
    public var grantee: NodeID { didSet { refresh() } }
    public var kind: Kind { didSet { refresh() } }
    /// Reclaims only: the departed node's grants from `parent` up to this seq stand; the
    /// reclaim takes the rest, ahead of any later ones.
    public var cutoff: UInt64 = 0 { didSet { refresh() } }
    /// Reclaims only: made by hand (`meshwork pool reclaim --force`), without votes.
    public var forced = false { didSet { refresh() } }
    /// Reclaims only: the members' signed consent.
    public var votes: [ReclaimVote] = [] { didSet { refresh() } }
    /// Merges only: the parents after `parent`, in increasing order (all above `parent`).
    public var extraParents: [Bytes32] = [] { didSet { refresh() } }
    public var signature: [UInt8] { didSet { refresh() } }
    /// The grant's name: BLAKE2b-256 of its signed bytes and signature. Children name their
    /// parent by it.
    public private(set) var ref: Bytes32 = .zero

    public init(grantor: NodeID, seq: UInt64, parent: Bytes32, range: AddressRange, grantee: NodeID, kind: Kind,
                cutoff: UInt64 = 0, forced: Bool = false, votes: [ReclaimVote] = [], extraParents: [Bytes32] = [],
                signature: [UInt8] = [UInt8](repeating: 0, count: 64)) {
        self.grantor = grantor
        self.seq = seq
        self.parent = parent
        self.range = range
        self.grantee = grantee
        self.kind = kind
        self.cutoff = cutoff
        self.forced = forced
        self.votes = votes
        self.extraParents = extraParents
        self.signature = signature
        refresh()
    }

    // The ref covers every field: equal refs are equal grants.
    public static func == (a: Grant, b: Grant) -> Bool { a.ref == b.ref }
    public func hash(into h: inout Hasher) { h.combine(ref) }

    private mutating func refresh() { ref = Bytes32(Blake2b.hash(signedBytes + signature, outputLength: 32))! }

    public var isGenesis: Bool { parent == .zero }

    /// Every parent: none for the genesis grant, several for a merge, else one.
    public var allParents: [Bytes32] { isGenesis ? [] : [parent] + extraParents }

    /// What the signature covers: a domain string and every field but the signature.
    public var signedBytes: [UInt8] {
        var w = WireWriter(capacity: 128)
        w.writeBytes(Array("meshwork pool grant v1".utf8))
        encodeBody(to: &w)
        return w.bytes
    }

    func encodeBody(to w: inout WireWriter) {
        w.write(grantor)
        w.writeUInt64(seq)
        w.writeBytes32(parent)
        w.writeUInt32(range.first)
        w.writeUInt32(range.last)
        w.write(grantee)
        w.writeUInt8(kind.rawValue)
        if kind == .reclaim {
            w.writeUInt64(cutoff)
            w.writeBool(forced)
            w.writeArray(.u16, votes)
        }
        if kind == .merge {
            w.writeUInt8(UInt8(extraParents.count))
            for p in extraParents { w.writeBytes32(p) }
        }
    }

    /// Where this grant sits among its parent's children: by seq, except that a reclaim
    /// sits right after its cutoff (after the departed node's grant with that seq).
    var order: (UInt64, UInt8) { kind == .reclaim ? (cutoff, 1) : (seq, 0) }

    /// The grant's size on the wire.
    public var encodedSize: Int {
        177 + (kind == .reclaim ? 11 + votes.reduce(0) { $0 + $1.encodedSize } : 0) + (kind == .merge ? 1 + 32 * extraParents.count : 0)
    }

    public mutating func sign(with auth: some RecordAuthenticator) { signature = auth.sign(signedBytes) }

    public var description: String {
        "\(grantor.fingerprint)#\(seq) \(kind) \(range) → \(grantee.fingerprint)"
    }
}

extension Grant: WireCodable {
    public init(from r: inout WireReader) throws(WireError) {
        let start = r
        let grantor = try r.read(NodeID.self)
        let seq = try r.readUInt64("grant seq")
        let parent = try r.readBytes32("grant parent")
        let first = try r.readUInt32("range first"), last = try r.readUInt32("range last")
        let grantee = try r.read(NodeID.self)
        let k = try r.readUInt8("grant kind")
        guard first <= last else { r = start; throw .invalidValue(field: "grant range", reason: "first > last") }
        guard let kind = Kind(rawValue: k) else { r = start; throw .invalidValue(field: "grant kind", reason: "unknown kind \(k)") }
        var cutoff: UInt64 = 0, forced = false, votes: [ReclaimVote] = [], extra: [Bytes32] = []
        if kind == .merge {
            do throws(WireError) {
                let n = Int(try r.readUInt8("merge parents"))
                guard n >= 1, n < Self.mergeLimit else { throw .invalidValue(field: "merge parents", reason: "\(n + 1) parents, not 2 to \(Self.mergeLimit)") }
                for _ in 0..<n { extra.append(try r.readBytes32("merge parent")) }
            } catch {
                r = start
                throw error
            }
        }
        if kind == .reclaim {
            do {
                cutoff = try r.readUInt64("reclaim cutoff")
                forced = try r.readBool("reclaim forced")
                votes = try r.readArray(of: ReclaimVote.self, .u16, limit: ReclaimVote.limit, minimumElementSize: ReclaimVote.minimumSize, "reclaim votes")
            } catch {
                r = start
                throw error
            }
        }
        let sig: [UInt8]
        do { sig = try r.readBytes(64, "grant signature") } catch { r = start; throw error }
        self.init(grantor: grantor, seq: seq, parent: parent, range: AddressRange(first, last), grantee: grantee, kind: kind,
                  cutoff: cutoff, forced: forced, votes: votes, extraParents: extra, signature: sig)
    }

    public func encode(to w: inout WireWriter) {
        encodeBody(to: &w)
        w.writeBytes(signature)
    }
}

/// One member's consent to a reclaim: "`signer`, whose newest grant had seq `seq`,
/// agrees that `successor` takes what the departed node still holds by grant `holding`,
/// after its grants up to `cutoff`". A vote carries no claim of weight: every view weighs
/// it by what its fold says the signer held at `seq` (RingView.voteWeight), and a reclaim
/// stands once its signers held a quorum of the pool. A forced reclaim carries one vote,
/// by the mesh's admin key (its `seq` is 0).
public struct ReclaimVote: Hashable, Sendable, WireCodable {
    public var signer: NodeID
    public var seq: UInt64
    public var signature: [UInt8]

    public init(signer: NodeID, seq: UInt64 = 0, signature: [UInt8] = [UInt8](repeating: 0, count: 64)) {
        self.signer = signer
        self.seq = seq
        self.signature = signature
    }

    /// At most this many votes in a reclaim (about 58 KB: one datagram).
    public static let limit = 550
    public static let minimumSize = 32 + 8 + 64

    public static func signedBytes(holding: Bytes32, cutoff: UInt64, successor: NodeID, seq: UInt64) -> [UInt8] {
        var w = WireWriter(capacity: 112)
        w.writeBytes(Array("meshwork pool reclaim v2".utf8))
        w.writeBytes32(holding)
        w.writeUInt64(cutoff)
        w.write(successor)
        w.writeUInt64(seq)
        return w.bytes
    }

    public var encodedSize: Int { Self.minimumSize }

    public init(from r: inout WireReader) throws(WireError) {
        signer = try r.read(NodeID.self)
        seq = try r.readUInt64("vote seq")
        signature = try r.readBytes(64, "vote signature")
    }

    public func encode(to w: inout WireWriter) {
        w.write(signer)
        w.writeUInt64(seq)
        w.writeBytes(signature)
    }
}

extension Grant.Kind: CustomStringConvertible {
    public var description: String {
        switch self {
        case .space: return "space"
        case .lease: return "lease"
        case .reclaim: return "reclaim"
        case .merge: return "merge"
        }
    }
}
