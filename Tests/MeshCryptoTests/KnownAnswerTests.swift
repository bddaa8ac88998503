import MeshCore
@testable import MeshCrypto
import Testing

/// Known-answer tests from the public standards: they prove we call libsodium correctly.
@Suite struct KnownAnswerTests {
    func h(_ s: String) -> [UInt8] { Hex.decode(s)! }

    @Test func chaCha20Poly1305RFC8439() throws {
        let key = try SymmetricKey(bytes: h(KAT.rfc8439Key))
        let sealed = try ChaChaPoly.seal(h(KAT.rfc8439Plaintext), key: key, nonce: h(KAT.rfc8439Nonce), authenticating: h(KAT.rfc8439AAD))
        #expect(Hex.encode(sealed) == KAT.rfc8439Ciphertext + KAT.rfc8439Tag)
        let opened = try ChaChaPoly.open(sealed, key: key, nonce: h(KAT.rfc8439Nonce), authenticating: h(KAT.rfc8439AAD))
        #expect(opened == h(KAT.rfc8439Plaintext))
    }

    @Test func xChaCha20Poly1305Draft() throws {
        let key = try SymmetricKey(bytes: h(KAT.xchachaKey))
        let sealed = try XChaChaPoly.seal(h(KAT.xchachaPlaintext), key: key, nonce: h(KAT.xchachaNonce), authenticating: h(KAT.xchachaAAD))
        #expect(Hex.encode(sealed) == KAT.xchachaCiphertext + KAT.xchachaTag)
        #expect(try XChaChaPoly.open(sealed, key: key, nonce: h(KAT.xchachaNonce), authenticating: h(KAT.xchachaAAD)) == h(KAT.xchachaPlaintext))
    }

    @Test(arguments: KAT.ed25519.indices)
    func ed25519RFC8032(index: Int) throws {
        let v = KAT.ed25519[index]
        let id = try h(v.seed).withUnsafeBytes { try NodeIdentity(seed: $0) }
        #expect(id.publicKey.bytes == h(v.publicKey))
        let sig = id.sign(h(v.message))
        #expect(sig.bytes == h(v.signature))
        #expect(id.publicKey.isValidSignature(sig, for: h(v.message)))
        var tampered = h(v.message) + [0]
        #expect(!id.publicKey.isValidSignature(sig, for: tampered))
        tampered = h(v.message)
        var badSig = sig.bytes
        badSig[0] ^= 1
        #expect(!id.publicKey.isValidSignature(try Ed25519Signature(bytes: badSig), for: tampered))
    }

    @Test(arguments: KAT.x25519ScalarMult.indices)
    func x25519RFC7748ScalarMult(index: Int) throws {
        let v = KAT.x25519ScalarMult[index]
        let sk = try X25519SecretKey(bytes: h(v.scalar))
        let shared = try sk.sharedSecret(with: X25519PublicKey(bytes: h(v.u)))
        #expect(shared.withUnsafeBytes { Array($0) } == h(v.output))
    }

    @Test func x25519RFC7748DiffieHellman() throws {
        let alice = try X25519SecretKey(bytes: h(KAT.x25519AlicePrivate))
        let bob = try X25519SecretKey(bytes: h(KAT.x25519BobPrivate))
        #expect(alice.publicKey.bytes == h(KAT.x25519AlicePublic))
        #expect(bob.publicKey.bytes == h(KAT.x25519BobPublic))
        let k1 = try alice.sharedSecret(with: bob.publicKey)
        let k2 = try bob.sharedSecret(with: alice.publicKey)
        #expect(k1.withUnsafeBytes { Array($0) } == h(KAT.x25519Shared))
        #expect(k1.constantTimeEquals(k2))
    }

    @Test func x25519RejectsLowOrderPoint() throws {
        let sk = try X25519SecretKey(bytes: h(KAT.x25519AlicePrivate))
        let zeroPoint = try X25519PublicKey(bytes: [UInt8](repeating: 0, count: 32))
        #expect(throws: CryptoError.weakSharedSecret) { try sk.sharedSecret(with: zeroPoint) }
    }

    @Test func blake2bRFC7693() {
        #expect(Hex.encode(Blake2b.hash(Array("abc".utf8), outputLength: 64)) == KAT.blake2bAbc512)
        let hasher = Blake2b.Hasher(outputLength: 64)
        hasher.update(Array("a".utf8))
        hasher.update(Array("bc".utf8))
        #expect(Hex.encode(hasher.finalize()) == KAT.blake2bAbc512)
    }

    @Test(arguments: KAT.blake2bKeyedKAT.indices)
    func blake2bKeyedReference(index: Int) {
        let v = KAT.blake2bKeyedKAT[index]
        let input = (0..<v.inputLength).map { UInt8(truncatingIfNeeded: $0) }
        let out = h(KAT.blake2bKATKey).withUnsafeBytes { Blake2b.hash(input, outputLength: 64, keyBytes: $0) }
        #expect(Hex.encode(out) == v.hash)
    }

    @Test func ed25519ToX25519Conversion() throws {
        let id = try h(KAT.ed25519ConvertSeed).withUnsafeBytes { try NodeIdentity(seed: $0) }
        #expect(id.publicKey.bytes == h(KAT.ed25519ConvertEd25519PublicKey))
        #expect(try id.publicKey.x25519().bytes == h(KAT.ed25519ConvertCurve25519PublicKey))
        let xsk = id.x25519SecretKey()
        #expect(xsk.storage.withUnsafeBytes { Array($0) } == h(KAT.ed25519ConvertCurve25519SecretKey))
        #expect(xsk.publicKey == (try id.publicKey.x25519()))
    }
}
