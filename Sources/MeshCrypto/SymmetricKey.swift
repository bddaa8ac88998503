import CSodium
import MeshCore

/// A 256-bit symmetric key (AEAD, keyed hashing, KDF input) in guarded memory.
public struct SymmetricKey: Sendable {
    public static let byteCount = 32
    let storage: SecureBytes

    /// Exactly 32 bytes, copied into guarded memory.
    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .wrongLength(what: "symmetric key", expected: Self.byteCount, got: bytes.count)
        }
        storage = bytes.withUnsafeBytes { SecureBytes(copying: $0) }
    }

    init(storage: SecureBytes) { self.storage = storage }

    public static func random(using rng: inout some RandomSource) -> SymmetricKey {
        SymmetricKey(storage: SecureBytes(random: byteCount, using: &rng))
    }

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try storage.withUnsafeBytes(body)
    }

    /// Constant-time equality.
    public func constantTimeEquals(_ other: SymmetricKey) -> Bool { storage.constantTimeEquals(other.storage) }
}

/// The 32-byte mesh secret from a mesh token. Whoever holds it may join the mesh; every
/// other mesh key is derived from it with a distinct KDF context (see `KeyPurpose`).
public struct MeshSecret: Sendable {
    public static let byteCount = 32
    let key: SymmetricKey

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .wrongLength(what: "mesh secret", expected: Self.byteCount, got: bytes.count)
        }
        key = try SymmetricKey(bytes: bytes)
    }

    init(storage: SecureBytes) { key = SymmetricKey(storage: storage) }

    public static func generate(using rng: inout some RandomSource) -> MeshSecret {
        MeshSecret(storage: SecureBytes(random: byteCount, using: &rng))
    }

    /// The sub-key for one purpose. Different purposes give independent keys.
    public func derive(_ purpose: KeyPurpose) -> SymmetricKey {
        KDF.derive(from: key, context: purpose.context, id: purpose.subkeyID)
    }

    /// A public name for the mesh: 8 bytes of a keyed hash, safe to show and log.
    public var meshID: MeshID {
        let out = key.withUnsafeBytes { k in
            Blake2b.hash(Array("meshwork mesh id".utf8), outputLength: 16, keyBytes: k)
        }
        return MeshID(bytes: Array(out.prefix(MeshID.byteCount)))
    }

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try key.withUnsafeBytes(body)
    }

    public func constantTimeEquals(_ other: MeshSecret) -> Bool { key.constantTimeEquals(other.key) }
}

/// The public identifier of a mesh (shown as 16 hex digits), derived one-way from the secret.
public struct MeshID: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 8
    public let bytes: [UInt8]
    public var description: String { Hex.encode(bytes) }
}

/// Every key derived from the mesh secret, each with its own 8-byte libsodium KDF context.
/// Adding a purpose means adding a case with a new context; never reuse one.
public enum KeyPurpose: Sendable, CaseIterable {
    /// AEAD key sealing every gossip and pool packet.
    case gossip
    /// Pre-shared key mixed into the Noise IKpsk2 handshake.
    case dataPlanePSK

    var context: String {
        switch self {
        case .gossip: return "mwgossip"
        case .dataPlanePSK: return "mwdatpsk"
        }
    }

    var subkeyID: UInt64 { 1 }
}

/// Key derivation (libsodium `crypto_kdf`, BLAKE2b-based).
public enum KDF {
    /// Derives a 32-byte sub-key. `context` must be exactly 8 ASCII bytes.
    public static func derive(from master: SymmetricKey, context: String, id: UInt64) -> SymmetricKey {
        Sodium.ready()
        let ctx = Array(context.utf8)
        precondition(ctx.count == Int(crypto_kdf_CONTEXTBYTES), "KDF context must be 8 bytes")
        let sub = SecureBytes(count: SymmetricKey.byteCount) { (out: UnsafeMutableRawBufferPointer) in
            master.withUnsafeBytes { mk in
                ctx.withUnsafeBufferPointer { c in
                    c.withMemoryRebound(to: CChar.self) { cc in
                        _ = crypto_kdf_derive_from_key(
                            out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count, id,
                            cc.baseAddress!, mk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    }
                }
            }
        }
        return SymmetricKey(storage: sub)
    }
}
