import MeshCore
@testable import MeshCrypto
import Testing

@Suite struct PrimitiveTests {
    var rng = SeededRandom(seed: 0x5eed)

    @Test func aeadRejectsTamperingAndWrongKey() throws {
        var rng = rng
        let key = SymmetricKey.random(using: &rng)
        let other = SymmetricKey.random(using: &rng)
        let nonce = ChaChaPoly.nonce(counter: 7)
        let sealed = try ChaChaPoly.seal(Array("hello mesh".utf8), key: key, nonce: nonce, authenticating: [1, 2])
        for i in sealed.indices {
            var t = sealed
            t[i] ^= 0x80
            #expect(throws: CryptoError.authenticationFailed) { try ChaChaPoly.open(t, key: key, nonce: nonce, authenticating: [1, 2]) }
        }
        #expect(throws: CryptoError.authenticationFailed) { try ChaChaPoly.open(sealed, key: other, nonce: nonce, authenticating: [1, 2]) }
        #expect(throws: CryptoError.authenticationFailed) { try ChaChaPoly.open(sealed, key: key, nonce: nonce, authenticating: [1, 3]) }
        #expect(throws: CryptoError.authenticationFailed) { try ChaChaPoly.open(sealed, key: key, nonce: ChaChaPoly.nonce(counter: 8), authenticating: [1, 2]) }
        #expect(throws: CryptoError.authenticationFailed) { try ChaChaPoly.open(Array(sealed.prefix(15)), key: key, nonce: nonce) }
        #expect(throws: CryptoError.wrongLength(what: "ChaCha20-Poly1305 nonce", expected: 12, got: 11)) {
            try ChaChaPoly.seal([], key: key, nonce: [UInt8](repeating: 0, count: 11))
        }
    }

    @Test func inPlaceAEADMatchesArrayAPI() throws {
        var rng = rng
        let key = SymmetricKey.random(using: &rng)
        let plain = rng.bytes(100)
        let ad: [UInt8] = [9, 9, 9]
        let expected = try ChaChaPoly.seal(plain, key: key, nonce: ChaChaPoly.nonce(counter: 42), authenticating: ad)
        var buf = plain + [UInt8](repeating: 0, count: ChaChaPoly.tagBytes)
        let n = buf.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { ChaChaPoly.sealInPlace(b, plaintextCount: plain.count, key: key, counter: 42, authenticating: $0) }
        }
        #expect(n == expected.count)
        #expect(buf == expected)
        let m = buf.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { ChaChaPoly.openInPlace(b, sealedCount: n, key: key, counter: 42, authenticating: $0) }
        }
        #expect(m == plain.count)
        #expect(Array(buf.prefix(plain.count)) == plain)
        buf = expected
        buf[3] ^= 1
        let bad = buf.withUnsafeMutableBytes { b in
            ad.withUnsafeBytes { ChaChaPoly.openInPlace(b, sealedCount: n, key: key, counter: 42, authenticating: $0) }
        }
        #expect(bad == nil)
    }

    @Test func keyTypesRejectWrongLengths() {
        for n in [0, 31, 33, 64] {
            let b = [UInt8](repeating: 1, count: n)
            #expect(throws: CryptoError.wrongLength(what: "symmetric key", expected: 32, got: n)) { try SymmetricKey(bytes: b) }
            #expect(throws: CryptoError.wrongLength(what: "mesh secret", expected: 32, got: n)) { try MeshSecret(bytes: b) }
            #expect(throws: CryptoError.wrongLength(what: "Ed25519 public key", expected: 32, got: n)) { try Ed25519PublicKey(bytes: b) }
            #expect(throws: CryptoError.wrongLength(what: "X25519 public key", expected: 32, got: n)) { try X25519PublicKey(bytes: b) }
            #expect(throws: CryptoError.wrongLength(what: "X25519 secret key", expected: 32, got: n)) { try X25519SecretKey(bytes: b) }
            #expect(throws: CryptoError.wrongLength(what: "Ed25519 seed", expected: 32, got: n)) { try b.withUnsafeBytes { try NodeIdentity(seed: $0) } }
        }
        #expect(throws: CryptoError.wrongLength(what: "Ed25519 signature", expected: 64, got: 63)) { try Ed25519Signature(bytes: [UInt8](repeating: 0, count: 63)) }
    }

    @Test func kdfContextsGiveIndependentKeys() throws {
        let secret = try MeshSecret(bytes: [UInt8](repeating: 7, count: 32))
        let same = try MeshSecret(bytes: [UInt8](repeating: 7, count: 32))
        let other = try MeshSecret(bytes: [UInt8](repeating: 8, count: 32))
        let gossip = secret.derive(.gossip)
        #expect(gossip.constantTimeEquals(same.derive(.gossip)))
        #expect(!gossip.constantTimeEquals(secret.derive(.dataPlanePSK)))
        #expect(!gossip.constantTimeEquals(other.derive(.gossip)))
        // A sub-key is never the secret itself.
        #expect(!gossip.constantTimeEquals(secret.key))
        #expect(secret.meshID == same.meshID)
        #expect(secret.meshID != other.meshID)
        #expect(secret.meshID.description.count == 16)
    }

    @Test func signaturesDoNotVerifyUnderAnotherKey() {
        var rng = rng
        let a = NodeIdentity.generate(using: &rng)
        let b = NodeIdentity.generate(using: &rng)
        let sig = a.sign([1, 2, 3])
        #expect(a.publicKey.isValidSignature(sig, for: [1, 2, 3]))
        #expect(!b.publicKey.isValidSignature(sig, for: [1, 2, 3]))
    }

    @Test func seededIdentitiesAreReproducible() {
        var r1 = SeededRandom(seed: 99), r2 = SeededRandom(seed: 99), r3 = SeededRandom(seed: 100)
        let a = NodeIdentity.generate(using: &r1), b = NodeIdentity.generate(using: &r2), c = NodeIdentity.generate(using: &r3)
        #expect(a.nodeID == b.nodeID)
        #expect(a.nodeID != c.nodeID)
    }

    @Test func systemRandomnessIsNotConstant() {
        var r = SodiumRandom()
        let a = r.bytes(32), b = r.bytes(32)
        #expect(a != b)
        #expect(a != [UInt8](repeating: 0, count: 32))
    }

    @Test func x25519FromIdentityAgreesBothWays() throws {
        var rng = rng
        let a = NodeIdentity.generate(using: &rng), b = NodeIdentity.generate(using: &rng)
        let ab = try a.x25519SecretKey().sharedSecret(with: b.publicKey.x25519())
        let ba = try b.x25519SecretKey().sharedSecret(with: a.publicKey.x25519())
        #expect(ab.constantTimeEquals(ba))
    }

    @Test func constantTimeCompare() {
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(constantTimeEqual([], []))
    }

    @Test func base64URLRoundTripsAndRejectsJunk() {
        var rng = rng
        for n in 0..<70 {
            let b = rng.bytes(n)
            let t = Base64URL.encode(b)
            #expect(!t.contains("=") && !t.contains("+") && !t.contains("/"))
            #expect(Base64URL.decode(Array(t.utf8)) == b)
        }
        #expect(Base64URL.decode(Array("ab$d".utf8)) == nil)
        #expect(Base64URL.decode(Array("a".utf8)) == nil)
    }
}
