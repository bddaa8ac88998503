import CSodium
import MeshCore

/// An X25519 public key (RFC 7748), the static key of a Noise handshake.
public struct X25519PublicKey: Hashable, Sendable {
    public static let byteCount = Int(crypto_scalarmult_BYTES)
    public let raw: Bytes32

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard let raw = Bytes32(bytes) else {
            throw .wrongLength(what: "X25519 public key", expected: Self.byteCount, got: bytes.count)
        }
        self.raw = raw
    }

    public init(_ raw: Bytes32) { self.raw = raw }
    public var bytes: [UInt8] { raw.bytes }
}

/// An X25519 secret scalar in guarded memory.
public struct X25519SecretKey: Sendable {
    public static let byteCount = Int(crypto_scalarmult_SCALARBYTES)
    let storage: SecureBytes

    init(storage: SecureBytes) { self.storage = storage }

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .wrongLength(what: "X25519 secret key", expected: Self.byteCount, got: bytes.count)
        }
        storage = bytes.withUnsafeBytes { SecureBytes(copying: $0) }
    }

    public static func generate(using rng: inout some RandomSource) -> X25519SecretKey {
        X25519SecretKey(storage: SecureBytes(random: byteCount, using: &rng))
    }

    /// The matching public key (`crypto_scalarmult_base`).
    public var publicKey: X25519PublicKey {
        Sodium.ready()
        var out = [UInt8](repeating: 0, count: X25519PublicKey.byteCount)
        storage.withUnsafeBytes { s in
            _ = crypto_scalarmult_base(&out, s.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return X25519PublicKey(Bytes32(out)!)
    }

    /// Diffie-Hellman: the shared secret with `peer`. Fails with `.weakSharedSecret` when the
    /// peer's key is a low-order point (the result would be all zeros).
    public func sharedSecret(with peer: X25519PublicKey) throws(CryptoError) -> SymmetricKey {
        Sodium.ready()
        var rc: Int32 = 0
        let out = SecureBytes(count: X25519PublicKey.byteCount) { (o: UnsafeMutableRawBufferPointer) in
            storage.withUnsafeBytes { s in
                peer.raw.withUnsafeBytes { p in
                    rc = crypto_scalarmult(
                        o.baseAddress!.assumingMemoryBound(to: UInt8.self), s.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        p.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        guard rc == 0 else { throw .weakSharedSecret }
        return SymmetricKey(storage: out)
    }
}
