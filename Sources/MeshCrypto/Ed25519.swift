import CSodium
import MeshCore

/// An Ed25519 public key (RFC 8032). A node's public key is its `NodeID`.
public struct Ed25519PublicKey: Hashable, Sendable {
    public static let byteCount = Int(crypto_sign_PUBLICKEYBYTES)
    public let raw: Bytes32

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard let raw = Bytes32(bytes) else {
            throw .wrongLength(what: "Ed25519 public key", expected: Self.byteCount, got: bytes.count)
        }
        self.raw = raw
    }

    public init(_ raw: Bytes32) { self.raw = raw }
    public init(_ node: NodeID) { raw = node.key }

    public var nodeID: NodeID { NodeID(raw) }
    public var bytes: [UInt8] { raw.bytes }

    /// Whether `signature` is this key's signature of `message`.
    public func isValidSignature(_ signature: Ed25519Signature, for message: [UInt8]) -> Bool {
        Sodium.ready()
        return signature.bytes.withUnsafeBufferPointer { s in
            raw.withUnsafeBytes { pk in
                crypto_sign_verify_detached(
                    s.baseAddress!, message, UInt64(message.count), pk.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 0
            }
        }
    }

    /// The X25519 public key of the same key pair (birational map; libsodium
    /// `crypto_sign_ed25519_pk_to_curve25519`). Fails for keys that are not valid points.
    public func x25519() throws(CryptoError) -> X25519PublicKey {
        Sodium.ready()
        var out = [UInt8](repeating: 0, count: X25519PublicKey.byteCount)
        let rc = raw.withUnsafeBytes { pk in
            crypto_sign_ed25519_pk_to_curve25519(&out, pk.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        guard rc == 0 else { throw .invalidPublicKey }
        return try X25519PublicKey(bytes: out)
    }
}

/// A 64-byte Ed25519 signature.
public struct Ed25519Signature: Hashable, Sendable {
    public static let byteCount = Int(crypto_sign_BYTES)
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .wrongLength(what: "Ed25519 signature", expected: Self.byteCount, got: bytes.count)
        }
        self.bytes = bytes
    }
}

/// A node's identity key pair: an Ed25519 secret key in guarded memory and its public key.
/// Made from a 32-byte seed (RFC 8032's "secret key"), which is what the key file stores.
public struct NodeIdentity: Sendable {
    public static let seedBytes = Int(crypto_sign_SEEDBYTES)

    let seed: SecureBytes
    let secretKey: SecureBytes  // libsodium's 64-byte form: seed ‖ public key
    public let publicKey: Ed25519PublicKey

    public var nodeID: NodeID { publicKey.nodeID }

    /// The key pair for a 32-byte seed.
    public init(seed bytes: UnsafeRawBufferPointer) throws(CryptoError) {
        guard bytes.count == Self.seedBytes else {
            throw .wrongLength(what: "Ed25519 seed", expected: Self.seedBytes, got: bytes.count)
        }
        try self.init(seedStorage: SecureBytes(copying: bytes))
    }

    init(seedStorage: SecureBytes) throws(CryptoError) {
        Sodium.ready()
        var pk = [UInt8](repeating: 0, count: Ed25519PublicKey.byteCount)
        let sk = SecureBytes(count: Int(crypto_sign_SECRETKEYBYTES)) { (out: UnsafeMutableRawBufferPointer) in
            seedStorage.withUnsafeBytes { s in
                _ = crypto_sign_seed_keypair(
                    &pk, out.baseAddress!.assumingMemoryBound(to: UInt8.self), s.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        seed = seedStorage
        secretKey = sk
        publicKey = try Ed25519PublicKey(bytes: pk)
    }

    /// A new identity from the given randomness (`SodiumRandom` for real keys).
    public static func generate(using rng: inout some RandomSource) -> NodeIdentity {
        // A 32-byte seed always makes a key pair.
        try! NodeIdentity(seedStorage: SecureBytes(random: seedBytes, using: &rng))
    }

    public func sign(_ message: [UInt8]) -> Ed25519Signature {
        Sodium.ready()
        var sig = [UInt8](repeating: 0, count: Ed25519Signature.byteCount)
        secretKey.withUnsafeBytes { sk in
            _ = crypto_sign_detached(&sig, nil, message, UInt64(message.count), sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return try! Ed25519Signature(bytes: sig)  // libsodium always writes 64 bytes
    }

    /// Gives the seed to `body` (for writing the key file); never log or print it.
    public func withSeed<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try seed.withUnsafeBytes(body)
    }

    /// The X25519 secret key of the same key pair (libsodium `crypto_sign_ed25519_sk_to_curve25519`),
    /// whose public key is `publicKey.x25519()`.
    public func x25519SecretKey() -> X25519SecretKey {
        let storage = SecureBytes(count: X25519SecretKey.byteCount) { (out: UnsafeMutableRawBufferPointer) in
            secretKey.withUnsafeBytes { sk in
                _ = crypto_sign_ed25519_sk_to_curve25519(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        return X25519SecretKey(storage: storage)
    }
}
