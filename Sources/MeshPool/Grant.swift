import MeshCore
import MeshCrypto
import MeshWire

/// One change of ownership in the address pool, signed by the node that gives it away.
///
/// "`grantor` hands `range` to `grantee`", holding it by `parent` (the grant that gave
/// `grantor` a range containing `range`). `seq` is the grantor's grant counter: it only
/// grows, and is persisted before an ACK is sent. The genesis grant has no parent and
/// hands the whole pool from the genesis node to itself. A `lease` grant is a single
/// address for its grantee's own use, and is never a parent. docs/pool.md has the rules.
public struct Grant: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable, Codable {
        /// Space the grantee may allocate from.
        case space = 1
        /// One address that the grantee uses.
        case lease = 2
    }

    public var grantor: NodeID
    public var seq: UInt64
    public var parent: Bytes32
    public var range: AddressRange
    public var grantee: NodeID
    public var kind: Kind
    public var signature: [UInt8]

    public init(grantor: NodeID, seq: UInt64, parent: Bytes32, range: AddressRange, grantee: NodeID, kind: Kind,
                signature: [UInt8] = [UInt8](repeating: 0, count: 64)) {
        self.grantor = grantor
        self.seq = seq
        self.parent = parent
        self.range = range
        self.grantee = grantee
        self.kind = kind
        self.signature = signature
    }

    public var isGenesis: Bool { parent == .zero }

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
    }

    /// The grant's name: BLAKE2b-256 of its signed bytes and signature. Children name their
    /// parent by it.
    public var ref: Bytes32 { Bytes32(Blake2b.hash(signedBytes + signature, outputLength: 32))! }

    public mutating func sign(with auth: some RecordAuthenticator) { signature = auth.sign(signedBytes) }

    public var description: String {
        "\(grantor.fingerprint)#\(seq) \(kind == .lease ? "lease" : "space") \(range) → \(grantee.fingerprint)"
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
        let sig = try r.readBytes(64, "grant signature")
        guard first <= last else { r = start; throw .invalidValue(field: "grant range", reason: "first > last") }
        guard let kind = Kind(rawValue: k) else { r = start; throw .invalidValue(field: "grant kind", reason: "unknown kind \(k)") }
        self.init(grantor: grantor, seq: seq, parent: parent, range: AddressRange(first, last), grantee: grantee, kind: kind, signature: sig)
    }

    public func encode(to w: inout WireWriter) {
        encodeBody(to: &w)
        w.writeBytes(signature)
    }
}
