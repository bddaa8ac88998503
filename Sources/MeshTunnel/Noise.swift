import MeshCore
import MeshCrypto

/// The Noise Protocol Framework (revision 34) for the two patterns Meshwork uses:
/// `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b` (its handshake: WireGuard's pattern, with
/// BLAKE2b) and `Noise_IK_25519_ChaChaPoly_BLAKE2b`. Every primitive is libsodium's:
/// X25519, ChaCha20-Poly1305 (IETF), BLAKE2b-512; HMAC and HKDF are the Noise spec's
/// constructions over BLAKE2b. Handshakes are rare, so this favours clarity over speed;
/// the transport path uses `ChaChaPoly`'s in-place functions directly.
public enum Noise {
    public static let hashLength = 64
    static let blockLength = 128
    public static let dhLength = 32

    public enum Failure: Error, Equatable, Sendable {
        /// A message failed authentication (wrong key, tampered, or not for us).
        case decryptFailed
        case tooShort
        /// A DH gave a low-order point.
        case weakKey
        case wrongState
    }

    static func hash(_ data: [UInt8]) -> [UInt8] { Blake2b.hash(data, outputLength: hashLength) }

    /// HMAC-BLAKE2b (RFC 2104 over BLAKE2b-512, block 128 bytes), as Noise defines it.
    static func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var k = key.count > blockLength ? hash(key) : key
        k += [UInt8](repeating: 0, count: blockLength - k.count)
        let inner = hash(k.map { $0 ^ 0x36 } + data)
        return hash(k.map { $0 ^ 0x5c } + inner)
    }

    /// Noise's HKDF: two or three 64-byte outputs from chaining key `ck` and `ikm`.
    static func hkdf(_ ck: [UInt8], _ ikm: [UInt8], outputs: Int) -> [[UInt8]] {
        let temp = hmac(key: ck, ikm)
        let o1 = hmac(key: temp, [1])
        let o2 = hmac(key: temp, o1 + [2])
        if outputs == 2 { return [o1, o2] }
        return [o1, o2, hmac(key: temp, o2 + [3])]
    }

    /// A key and a nonce counter: encrypts with ChaCha20-Poly1305 once keyed.
    public struct CipherState: Sendable {
        var key: SymmetricKey?
        public private(set) var nonce: UInt64 = 0

        init() {}

        /// Keyed with the first 32 bytes of an HKDF output.
        init(keyFrom output: [UInt8]) throws(Failure) {
            guard let k = try? SymmetricKey(bytes: Array(output.prefix(SymmetricKey.byteCount))) else { throw .wrongState }
            key = k
        }

        public var hasKey: Bool { key != nil }

        public mutating func encrypt(_ plaintext: [UInt8], ad: [UInt8] = []) -> [UInt8] {
            guard let key else { return plaintext }
            defer { nonce += 1 }
            var out = plaintext + [UInt8](repeating: 0, count: ChaChaPoly.tagBytes)
            let n = out.withUnsafeMutableBytes { buf in
                ad.withUnsafeBytes { ChaChaPoly.sealInPlace(buf, plaintextCount: plaintext.count, key: key, counter: nonce, authenticating: $0) }
            }
            return Array(out.prefix(n))
        }

        public mutating func decrypt(_ ciphertext: [UInt8], ad: [UInt8] = []) throws(Failure) -> [UInt8] {
            guard let key else { return ciphertext }
            var buf = ciphertext
            let n = buf.withUnsafeMutableBytes { b in
                ad.withUnsafeBytes { ChaChaPoly.openInPlace(b, sealedCount: ciphertext.count, key: key, counter: nonce, authenticating: $0) }
            }
            guard let n else { throw .decryptFailed }
            nonce += 1
            return Array(buf.prefix(n))
        }

        /// The raw key, for handing to the transport.
        public var keyBytes: [UInt8]? { key?.withUnsafeBytes { Array($0) } }
    }

    struct SymmetricState: Sendable {
        var cipher = CipherState()
        var ck: [UInt8]
        var h: [UInt8]

        init(protocolName: String) {
            let name = Array(protocolName.utf8)
            h = name.count <= hashLength ? name + [UInt8](repeating: 0, count: hashLength - name.count) : Noise.hash(name)
            ck = h
        }

        mutating func mixKey(_ ikm: [UInt8]) throws(Failure) {
            let out = hkdf(ck, ikm, outputs: 2)
            ck = out[0]
            cipher = try CipherState(keyFrom: out[1])
        }

        mutating func mixHash(_ data: [UInt8]) { h = Noise.hash(h + data) }

        mutating func mixKeyAndHash(_ ikm: [UInt8]) throws(Failure) {
            let out = hkdf(ck, ikm, outputs: 3)
            ck = out[0]
            mixHash(out[1])
            cipher = try CipherState(keyFrom: out[2])
        }

        mutating func encryptAndHash(_ plaintext: [UInt8]) -> [UInt8] {
            let c = cipher.encrypt(plaintext, ad: h)
            mixHash(c)
            return c
        }

        mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(Failure) -> [UInt8] {
            let p = try cipher.decrypt(ciphertext, ad: h)
            mixHash(ciphertext)
            return p
        }

        func split() throws(Failure) -> (CipherState, CipherState) {
            let out = hkdf(ck, [], outputs: 2)
            return (try CipherState(keyFrom: out[0]), try CipherState(keyFrom: out[1]))
        }
    }
}
