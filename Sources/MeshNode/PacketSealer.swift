import MeshCore
import MeshCrypto

/// Seals and opens the body of gossip-key packets. The real node uses `GossipSealer`
/// (XChaCha20-Poly1305 under the mesh gossip key); only the simulator has a stand-in.
public protocol PacketSealer: Sendable {
    /// Bytes added to each packet body.
    var overhead: Int { get }
    /// `nonce ‖ ciphertext ‖ tag`, authenticating `header` too.
    mutating func seal(_ plaintext: [UInt8], header: [UInt8]) -> [UInt8]
    /// The plaintext, or nil when the packet was not sealed with this mesh's key or was altered.
    func open(_ sealed: ArraySlice<UInt8>, header: [UInt8]) -> [UInt8]?
}

/// XChaCha20-Poly1305 with a random 24-byte nonce per packet, under the key derived from
/// the mesh secret for gossip (`KeyPurpose.gossip`).
public struct GossipSealer: PacketSealer {
    let key: SymmetricKey
    var random: SodiumRandom

    public init(secret: MeshSecret) {
        key = secret.derive(.gossip)
        random = SodiumRandom()
    }

    public var overhead: Int { XChaChaPoly.nonceBytes + XChaChaPoly.tagBytes }

    public mutating func seal(_ plaintext: [UInt8], header: [UInt8]) -> [UInt8] {
        let nonce = random.bytes(XChaChaPoly.nonceBytes)
        // The nonce has the right length, so sealing cannot fail.
        let ct = (try? XChaChaPoly.seal(plaintext, key: key, nonce: nonce, authenticating: header)) ?? []
        return nonce + ct
    }

    public func open(_ sealed: ArraySlice<UInt8>, header: [UInt8]) -> [UInt8]? {
        guard sealed.count >= overhead else { return nil }
        let nonce = Array(sealed.prefix(XChaChaPoly.nonceBytes))
        return try? XChaChaPoly.open(Array(sealed.dropFirst(XChaChaPoly.nonceBytes)), key: key, nonce: nonce, authenticating: header)
    }
}
