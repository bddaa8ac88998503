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
    public struct Holding: Hashable, Sendable {
        public var ref: Bytes32
        public var grantor: NodeID
        public var seq: UInt64
        public var grantee: NodeID
        public var kind: Grant.Kind
        /// The grant's whole range (a reclaim of it takes this; a child lies inside it).
        public var range: AddressRange
        /// Its effective range in the fold at the cut: what it still holds.
        public var held: RangeSet

        public init(ref: Bytes32, grantor: NodeID, seq: UInt64, grantee: NodeID, kind: Grant.Kind, range: AddressRange, held: RangeSet) {
            self.ref = ref
            self.grantor = grantor
            self.seq = seq
            self.grantee = grantee
            self.kind = kind
            self.range = range
            self.held = held
        }

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
    }

    /// "`grantor`'s grants up to `seq` are inside."
    public struct Mark: Hashable, Sendable {
        public var grantor: NodeID
        public var seq: UInt64

        public init(grantor: NodeID, seq: UInt64) {
            self.grantor = grantor
            self.seq = seq
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
    public var number: UInt64 { didSet { refresh() } }
    /// The ref of checkpoint `number − 1`; zero for the first.
    public var previous: Bytes32 { didSet { refresh() } }
    /// Sorted by grantor, one per grantor.
    public var marks: [Mark] { didSet { refresh() } }
    /// Sorted by ref.
    public var holdings: [Holding] { didSet { refresh() } }
    /// Not part of the body (nor of the ref): added as members sign.
    public var signatures: [Signature] = []

    public init(number: UInt64, previous: Bytes32, marks: [Mark], holdings: [Holding], signatures: [Signature] = []) {
        self.number = number
        self.previous = previous
        self.marks = marks.sorted { $0.grantor < $1.grantor }
        self.holdings = holdings.sorted { $0.ref < $1.ref }
        self.signatures = signatures
        refresh()
    }

    /// BLAKE2b-256 of the body: what members sign, and the checkpoint's name. Kept with the
    /// checkpoint (a hash per change of the body, not one per use).
    public private(set) var ref: Bytes32 = .zero

    private mutating func refresh() { ref = Bytes32(Blake2b.hash(body, outputLength: 32))! }

    static let limit = 1 << 20

    /// The body: everything but the signatures ([wire-format.md](../../docs/wire-format.md),
    /// "Checkpoint"). Node IDs are written once, in a sorted table, and named by index;
    /// seqs, indices and lengths are LEB128: about 50 bytes a holding.
    public var body: [UInt8] {
        var ids = Set<NodeID>()
        for m in marks { ids.insert(m.grantor) }
        for h in holdings { ids.insert(h.grantor); ids.insert(h.grantee) }
        let table = ids.sorted()
        let index = Dictionary(uniqueKeysWithValues: table.enumerated().map { ($1, UInt64($0)) })
        var w = WireWriter(capacity: 64 + 32 * table.count + 6 * marks.count + 56 * holdings.count)
        w.writeUInt64(number)
        w.writeBytes32(previous)
        w.writeVarUInt(UInt64(table.count))
        for id in table { w.write(id) }
        w.writeVarUInt(UInt64(marks.count))
        for m in marks {
            w.writeVarUInt(index[m.grantor]!)
            w.writeVarUInt(m.seq)
        }
        w.writeVarUInt(UInt64(holdings.count))
        for h in holdings {
            w.writeBytes32(h.ref)
            w.writeVarUInt(index[h.grantor]!)
            w.writeVarUInt(h.seq)
            w.writeVarUInt(index[h.grantee]!)
            w.writeUInt8(h.kind.rawValue)
            w.writeUInt32(h.range.first)
            w.writeVarUInt(UInt64(h.range.last) &- UInt64(h.range.first))
            w.writeVarUInt(UInt64(h.held.ranges.count))
            var next = UInt64(h.range.first)
            // (Wrapping: a malformed holding, held outside its range, still gets a body, which
            // no decoder takes.)
            for r in h.held.ranges {
                w.writeVarUInt(UInt64(r.first) &- next)
                w.writeVarUInt(UInt64(r.last) &- UInt64(r.first))
                next = UInt64(r.last) + 1
            }
        }
        return w.bytes
    }

    /// What a member signs.
    public static func signedBytes(ref: Bytes32) -> [UInt8] {
        var w = WireWriter(capacity: 64)
        w.writeBytes(Array("meshwork pool checkpoint v2".utf8))
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
        /// A count, checked against the bytes left (each element takes at least `least`)
        /// and the limit before anything is allocated.
        func count(_ field: String, least: Int) throws(WireError) -> Int {
            let n = try r.readVarUInt(field)
            guard n <= UInt64(Self.limit), n <= UInt64(r.remaining / least) else {
                throw .invalidValue(field: field, reason: "\(n) is more than the bytes left or the limit allow")
            }
            return Int(n)
        }
        number = try r.readUInt64("checkpoint number")
        previous = try r.readBytes32("checkpoint previous")
        var table: [NodeID] = []
        for _ in 0..<(try count("checkpoint node IDs", least: 32)) { table.append(try r.read(NodeID.self)) }
        guard zip(table, table.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw .invalidValue(field: "checkpoint node IDs", reason: "not sorted, or one twice")
        }
        var used = [Bool](repeating: false, count: table.count)
        func id(_ field: String) throws(WireError) -> NodeID {
            let i = try r.readVarUInt(field)
            guard i < UInt64(table.count) else { throw .invalidValue(field: field, reason: "index \(i) of \(table.count) node IDs") }
            used[Int(i)] = true
            return table[Int(i)]
        }
        marks = []
        for _ in 0..<(try count("checkpoint marks", least: 2)) {
            let grantor = try id("mark grantor")
            marks.append(Mark(grantor: grantor, seq: try r.readVarUInt("mark seq")))
        }
        holdings = []
        for _ in 0..<(try count("checkpoint holdings", least: 44)) {
            let ref = try r.readBytes32("holding ref")
            let grantor = try id("holding grantor")
            let seq = try r.readVarUInt("holding seq")
            let grantee = try id("holding grantee")
            let k = try r.readUInt8("holding kind")
            guard let kind = Grant.Kind(rawValue: k) else { throw .invalidValue(field: "holding kind", reason: "unknown kind \(k)") }
            let first = UInt64(try r.readUInt32("holding range first"))
            let last = first + (try r.readVarUInt("holding range length"))
            guard last <= UInt64(UInt32.max) else { throw .invalidValue(field: "holding range", reason: "past the last address") }
            let pieces = try count("holding held", least: 2)
            guard pieces > 0 else { throw .invalidValue(field: "holding held", reason: "no range held") }
            var held: [AddressRange] = []
            var next = first
            for i in 0..<pieces {
                let gap = try r.readVarUInt("held gap")
                guard i == 0 || gap > 0 else { throw .invalidValue(field: "holding held", reason: "ranges not apart") }
                let a = next + gap
                let b = a + (try r.readVarUInt("held length"))
                guard a >= next, b >= a, b <= last else { throw .invalidValue(field: "holding held", reason: "a range outside the grant's") }
                held.append(AddressRange(UInt32(a), UInt32(b)))
                next = b + 1
            }
            holdings.append(Holding(ref: ref, grantor: grantor, seq: seq, grantee: grantee, kind: kind,
                                    range: AddressRange(UInt32(first), UInt32(last)), held: RangeSet(held)))
        }
        guard used.allSatisfy({ $0 }) else { throw .invalidValue(field: "checkpoint node IDs", reason: "one that nothing names") }
        signatures = try r.readArray(of: Signature.self, .u16, limit: 4096, minimumElementSize: 96, "checkpoint signatures")
        guard zip(marks, marks.dropFirst()).allSatisfy({ $0.grantor < $1.grantor }) else {
            throw .invalidValue(field: "checkpoint marks", reason: "not sorted by grantor, or a grantor twice")
        }
        guard zip(holdings, holdings.dropFirst()).allSatisfy({ $0.ref < $1.ref }) else {
            throw .invalidValue(field: "checkpoint holdings", reason: "not sorted by ref, or a ref twice")
        }
        refresh()
    }

    public func encode(to w: inout WireWriter) {
        w.writeBytes(body)
        w.writeArray(.u16, signatures)
    }
}
