import MeshCore
import MeshCrypto
import MeshWire

/// The fold of a view at a cut, standing in for the grants inside the cut: history
/// compaction (docs/pool.md, "History compaction").
///
/// A grant is *inside* the cut if its grantor has a mark and its seq is at most the mark's
/// seq; the cut is closed under parents. `holdings` are the grants inside whose effective
/// range in the fold of the grants inside is not empty, each with that range (`held`): the
/// roots on which a view built on this checkpoint folds the grants made since. A grant
/// whose effective range is empty at the cut never gains one (adding grants only shrinks
/// effective ranges), so dropping it, and everything under it, changes no fold.
public struct PoolCheckpoint: Hashable, Sendable {
    /// One grant inside the cut that still holds something, and what it holds.
    public struct Holding: Hashable, Sendable, WireCodable {
        public var ref: Bytes32
        public var grantor: NodeID
        public var seq: UInt64
        public var grantee: NodeID
        public var kind: Grant.Kind
        /// The grant's whole range (a reclaim of it takes this; a child lies inside it).
        public var range: AddressRange
        /// Its effective range in the fold at the cut: what it still holds.
        public var held: RangeSet

        public init(ref: Bytes32, grant g: Grant, held: RangeSet) {
            self.ref = ref
            grantor = g.grantor
            seq = g.seq
            grantee = g.grantee
            kind = g.kind
            range = g.range
            self.held = held
        }

        /// The grant as a parent: every field a child's or a reclaim's checks read (no
        /// signature, no parent: it is a root).
        var asParent: Grant {
            Grant(grantor: grantor, seq: seq, parent: .zero, range: range, grantee: grantee, kind: kind)
        }

        public init(from r: inout WireReader) throws(WireError) {
            ref = try r.readBytes32("holding ref")
            grantor = try r.read(NodeID.self)
            seq = try r.readUInt64("holding seq")
            grantee = try r.read(NodeID.self)
            let k = try r.readUInt8("holding kind")
            guard let kind = Grant.Kind(rawValue: k) else { throw .invalidValue(field: "holding kind", reason: "unknown kind \(k)") }
            self.kind = kind
            let first = try r.readUInt32("holding range first"), last = try r.readUInt32("holding range last")
            guard first <= last else { throw .invalidValue(field: "holding range", reason: "first > last") }
            range = AddressRange(first, last)
            let pieces = try r.readArray(of: Piece.self, .u16, limit: Int(UInt16.max), minimumElementSize: 8, "holding held")
            let set = RangeSet(pieces.map(\.range))
            guard set.ranges.count == pieces.count, pieces.isEmpty || set.ranges == pieces.map(\.range) else {
                throw .invalidValue(field: "holding held", reason: "ranges not sorted, disjoint and apart")
            }
            held = set
        }

        public func encode(to w: inout WireWriter) {
            w.writeBytes32(ref)
            w.write(grantor)
            w.writeUInt64(seq)
            w.write(grantee)
            w.writeUInt8(kind.rawValue)
            w.writeUInt32(range.first)
            w.writeUInt32(range.last)
            w.writeArray(.u16, held.ranges.map(Piece.init))
        }
    }

    /// An address range on the wire.
    struct Piece: WireCodable {
        var range: AddressRange
        init(_ range: AddressRange) { self.range = range }
        init(from r: inout WireReader) throws(WireError) {
            let first = try r.readUInt32("range first"), last = try r.readUInt32("range last")
            guard first <= last else { throw .invalidValue(field: "range", reason: "first > last") }
            range = AddressRange(first, last)
        }
        func encode(to w: inout WireWriter) {
            w.writeUInt32(range.first)
            w.writeUInt32(range.last)
        }
    }

    /// "`grantor`'s grants up to `seq` are inside."
    public struct Mark: Hashable, Sendable, WireCodable {
        public var grantor: NodeID
        public var seq: UInt64

        public init(grantor: NodeID, seq: UInt64) {
            self.grantor = grantor
            self.seq = seq
        }

        public init(from r: inout WireReader) throws(WireError) {
            grantor = try r.read(NodeID.self)
            seq = try r.readUInt64("mark seq")
        }

        public func encode(to w: inout WireWriter) {
            w.write(grantor)
            w.writeUInt64(seq)
        }
    }

    /// One member's signature over the checkpoint's body.
    public struct Signature: Hashable, Sendable, WireCodable {
        public var signer: NodeID
        public var signature: [UInt8]

        public init(signer: NodeID, signature: [UInt8]) {
            self.signer = signer
            self.signature = signature
        }

        public init(from r: inout WireReader) throws(WireError) {
            signer = try r.read(NodeID.self)
            signature = try r.readBytes(64, "checkpoint signature")
        }

        public func encode(to w: inout WireWriter) {
            w.write(signer)
            w.writeBytes(signature)
        }
    }

    /// 1 for the first checkpoint (built on the genesis grant), then one more each time.
    public var number: UInt64
    /// The ref of checkpoint `number − 1`; zero for the first.
    public var previous: Bytes32
    /// Sorted by grantor, one per grantor.
    public var marks: [Mark]
    /// Sorted by ref.
    public var holdings: [Holding]
    /// Not part of the body (nor of the ref): added as members sign.
    public var signatures: [Signature] = []

    public init(number: UInt64, previous: Bytes32, marks: [Mark], holdings: [Holding], signatures: [Signature] = []) {
        self.number = number
        self.previous = previous
        self.marks = marks.sorted { $0.grantor < $1.grantor }
        self.holdings = holdings.sorted { $0.ref < $1.ref }
        self.signatures = signatures
    }

    static let limit = 1 << 20

    /// The body: everything but the signatures.
    public var body: [UInt8] {
        var w = WireWriter(capacity: 64 + 40 * marks.count + 140 * holdings.count)
        w.writeUInt64(number)
        w.writeBytes32(previous)
        w.writeArray(.u32, marks)
        w.writeArray(.u32, holdings)
        return w.bytes
    }

    /// BLAKE2b-256 of the body: what members sign, and the checkpoint's name.
    public var ref: Bytes32 { Bytes32(Blake2b.hash(body, outputLength: 32))! }

    /// What a member signs.
    public static func signedBytes(ref: Bytes32) -> [UInt8] {
        var w = WireWriter(capacity: 64)
        w.writeBytes(Array("meshwork pool checkpoint v1".utf8))
        w.writeBytes32(ref)
        return w.bytes
    }

    /// Whether `g` lies inside the cut (what a view built on this drops).
    public func holdsInside(_ g: Grant) -> Bool {
        if g.isGenesis { return true }
        let i = marks.partitionPoint { $0.grantor < g.grantor }
        return i < marks.count && marks[i].grantor == g.grantor && g.seq <= marks[i].seq
    }

    /// The highest seq inside the cut, per grantor named.
    public var insideSeq: [NodeID: UInt64] {
        Dictionary(marks.map { ($0.grantor, $0.seq) }, uniquingKeysWith: max)
    }
}

extension PoolCheckpoint: WireCodable {
    public init(from r: inout WireReader) throws(WireError) {
        number = try r.readUInt64("checkpoint number")
        previous = try r.readBytes32("checkpoint previous")
        marks = try r.readArray(of: Mark.self, .u32, limit: Self.limit, minimumElementSize: 40, "checkpoint marks")
        holdings = try r.readArray(of: Holding.self, .u32, limit: Self.limit, minimumElementSize: 115, "checkpoint holdings")
        signatures = try r.readArray(of: Signature.self, .u16, limit: 4096, minimumElementSize: 96, "checkpoint signatures")
        guard zip(marks, marks.dropFirst()).allSatisfy({ $0.grantor < $1.grantor }) else {
            throw .invalidValue(field: "checkpoint marks", reason: "not sorted by grantor, or a grantor twice")
        }
        guard zip(holdings, holdings.dropFirst()).allSatisfy({ $0.ref < $1.ref }) else {
            throw .invalidValue(field: "checkpoint holdings", reason: "not sorted by ref, or a ref twice")
        }
    }

    public func encode(to w: inout WireWriter) {
        w.writeBytes(body)
        w.writeArray(.u16, signatures)
    }
}
