import MeshCore
import MeshWire

/// What a node says about itself, signed by it: no other member can forge or alter it.
/// A newer incarnation replaces an older one; `left` marks a graceful departure.
public struct MemberRecord: Hashable, Sendable, CustomStringConvertible {
    public static let nameLimit = 64
    public static let endpointLimit = 8
    public static let signatureBytes = 64

    public var node: NodeID
    public var incarnation: UInt64
    public var name: String
    public var endpoints: [Endpoint]
    /// The node's X25519 public key for data-plane handshakes.
    public var x25519: Bytes32
    public var left: Bool
    public var signature: [UInt8]

    public init(node: NodeID, incarnation: UInt64, name: String, endpoints: [Endpoint], x25519: Bytes32, left: Bool = false,
                signature: [UInt8] = [UInt8](repeating: 0, count: MemberRecord.signatureBytes)) {
        self.node = node
        self.incarnation = incarnation
        self.name = name
        self.endpoints = Array(endpoints.prefix(Self.endpointLimit))
        self.x25519 = x25519
        self.left = left
        self.signature = signature
    }

    /// The bytes the signature covers: a domain string, then every field but the signature.
    public var signedBytes: [UInt8] {
        var w = WireWriter(capacity: 160)
        w.writeBytes(Array("meshwork member record v1".utf8))
        encodeBody(to: &w)
        return w.bytes
    }

    func encodeBody(to w: inout WireWriter) {
        w.write(node)
        w.writeUInt64(incarnation)
        w.writeString(.u8, name)
        w.writeArray(.u8, endpoints)
        w.writeBytes32(x25519)
        w.writeBool(left)
    }

    public mutating func sign(with auth: some RecordAuthenticator) {
        signature = auth.sign(signedBytes)
    }

    public func isValid(using auth: some RecordAuthenticator) -> Bool {
        auth.verify(signature: signature, message: signedBytes, signer: node)
    }

    public var description: String { "\(name)(\(node.fingerprint))#\(incarnation)\(left ? " left" : "")" }
}

extension MemberRecord: WireCodable {
    public init(from r: inout WireReader) throws(WireError) {
        let node = try r.read(NodeID.self)
        let inc = try r.readUInt64("incarnation")
        let name = try r.readString(.u8, limit: Self.nameLimit, "member name")
        let eps = try r.readArray(of: Endpoint.self, .u8, limit: Self.endpointLimit, minimumElementSize: 7, "endpoints")
        let x = try r.readBytes32("x25519 key")
        let left = try r.readBool("left")
        let sig = try r.readBytes(Self.signatureBytes, "record signature")
        self.init(node: node, incarnation: inc, name: name, endpoints: eps, x25519: x, left: left, signature: sig)
    }

    public func encode(to w: inout WireWriter) {
        encodeBody(to: &w)
        w.writeBytes(signature)
    }
}

