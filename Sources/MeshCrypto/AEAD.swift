import CSodium

/// ChaCha20-Poly1305 with a 96-bit nonce (IETF, RFC 8439), from libsodium.
/// A nonce must never repeat under one key: the data plane uses a counter.
public enum ChaChaPoly {
    public static let keyBytes = Int(crypto_aead_chacha20poly1305_ietf_KEYBYTES)
    public static let nonceBytes = Int(crypto_aead_chacha20poly1305_ietf_NPUBBYTES)
    public static let tagBytes = Int(crypto_aead_chacha20poly1305_ietf_ABYTES)

    /// The 12-byte nonce for a 64-bit counter: four zero bytes, then the counter
    /// little-endian (as WireGuard and Noise's ChaChaPoly do).
    public static func nonce(counter: UInt64) -> [UInt8] {
        var n = [UInt8](repeating: 0, count: nonceBytes)
        for i in 0..<8 { n[4 + i] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(i))) }
        return n
    }

    /// The same nonce as `nonce(counter:)`, as 12 packed bytes on the stack (no allocation).
    @inline(__always)
    static func counterNonce(_ counter: UInt64) -> (UInt32, UInt32, UInt32) {
        (0, UInt32(truncatingIfNeeded: counter).littleEndian, UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    }

    /// Ciphertext followed by the 16-byte tag.
    public static func seal(_ plaintext: [UInt8], key: SymmetricKey, nonce: [UInt8], authenticating ad: [UInt8] = [])
        throws(CryptoError) -> [UInt8]
    {
        try AEADCall.seal(crypto_aead_chacha20poly1305_ietf_encrypt, "ChaCha20-Poly1305 nonce", nonceBytes, plaintext, key, nonce, ad)
    }

    /// The plaintext, or `.authenticationFailed` if the tag does not verify.
    public static func open(_ sealed: [UInt8], key: SymmetricKey, nonce: [UInt8], authenticating ad: [UInt8] = [])
        throws(CryptoError) -> [UInt8]
    {
        try AEADCall.open(crypto_aead_chacha20poly1305_ietf_decrypt, "ChaCha20-Poly1305 nonce", nonceBytes, sealed, key, nonce, ad)
    }

    /// Seals in place without allocating: `buffer[0..<plaintextCount]` holds the plaintext
    /// and must have `tagBytes` spare after it. Returns the sealed length.
    public static func sealInPlace(
        _ buffer: UnsafeMutableRawBufferPointer, plaintextCount: Int, key: SymmetricKey, counter: UInt64,
        authenticating ad: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) -> Int {
        precondition(buffer.count >= plaintextCount + tagBytes, "no room for the tag")
        Sodium.ready()
        var nonce = counterNonce(counter)
        var outLen: UInt64 = 0
        let p = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        key.withUnsafeBytes { k in
            withUnsafeBytes(of: &nonce) { n in
                _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                    p, &outLen, p, UInt64(plaintextCount),
                    ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count), nil,
                    n.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        return Int(outLen)
    }

    /// Opens in place without allocating; returns the plaintext length, or nil if the tag
    /// does not verify (the buffer's contents are then unspecified).
    public static func openInPlace(
        _ buffer: UnsafeMutableRawBufferPointer, sealedCount: Int, key: SymmetricKey, counter: UInt64,
        authenticating ad: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) -> Int? {
        guard sealedCount >= tagBytes, sealedCount <= buffer.count else { return nil }
        Sodium.ready()
        var nonce = counterNonce(counter)
        var outLen: UInt64 = 0
        let p = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let rc = key.withUnsafeBytes { k in
            withUnsafeBytes(of: &nonce) { n in
                crypto_aead_chacha20poly1305_ietf_decrypt(
                    p, &outLen, nil, p, UInt64(sealedCount),
                    ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count),
                    n.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        return rc == 0 ? Int(outLen) : nil
    }
}

/// XChaCha20-Poly1305 with a 192-bit nonce, from libsodium: random nonces are safe, so it
/// seals packets that carry no counter (gossip).
public enum XChaChaPoly {
    public static let keyBytes = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    public static let nonceBytes = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    public static let tagBytes = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)

    public static func seal(_ plaintext: [UInt8], key: SymmetricKey, nonce: [UInt8], authenticating ad: [UInt8] = [])
        throws(CryptoError) -> [UInt8]
    {
        try AEADCall.seal(crypto_aead_xchacha20poly1305_ietf_encrypt, "XChaCha20-Poly1305 nonce", nonceBytes, plaintext, key, nonce, ad)
    }

    public static func open(_ sealed: [UInt8], key: SymmetricKey, nonce: [UInt8], authenticating ad: [UInt8] = [])
        throws(CryptoError) -> [UInt8]
    {
        try AEADCall.open(crypto_aead_xchacha20poly1305_ietf_decrypt, "XChaCha20-Poly1305 nonce", nonceBytes, sealed, key, nonce, ad)
    }
}

/// The array-in, array-out calling pattern shared by libsodium's IETF AEADs, which all
/// take the same arguments and differ only in nonce length.
private enum AEADCall {
    typealias Encrypt = (
        UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt64>?, UnsafePointer<UInt8>?, UInt64,
        UnsafePointer<UInt8>?, UInt64, UnsafePointer<UInt8>?, UnsafePointer<UInt8>, UnsafePointer<UInt8>
    ) -> Int32
    typealias Decrypt = (
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt64>?, UnsafeMutablePointer<UInt8>?, UnsafePointer<UInt8>,
        UInt64, UnsafePointer<UInt8>?, UInt64, UnsafePointer<UInt8>, UnsafePointer<UInt8>
    ) -> Int32

    static let tagBytes = 16

    static func seal(
        _ fn: Encrypt, _ nonceName: String, _ nonceBytes: Int, _ plaintext: [UInt8], _ key: SymmetricKey,
        _ nonce: [UInt8], _ ad: [UInt8]
    ) throws(CryptoError) -> [UInt8] {
        guard nonce.count == nonceBytes else { throw .wrongLength(what: nonceName, expected: nonceBytes, got: nonce.count) }
        Sodium.ready()
        var out = [UInt8](repeating: 0, count: plaintext.count + tagBytes)
        var outLen: UInt64 = 0
        key.withUnsafeBytes { k in
            _ = fn(&out, &outLen, plaintext, UInt64(plaintext.count), ad, UInt64(ad.count), nil, nonce,
                   k.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return out
    }

    static func open(
        _ fn: Decrypt, _ nonceName: String, _ nonceBytes: Int, _ sealed: [UInt8], _ key: SymmetricKey,
        _ nonce: [UInt8], _ ad: [UInt8]
    ) throws(CryptoError) -> [UInt8] {
        guard nonce.count == nonceBytes else { throw .wrongLength(what: nonceName, expected: nonceBytes, got: nonce.count) }
        guard sealed.count >= tagBytes else { throw .authenticationFailed }
        Sodium.ready()
        var out = [UInt8](repeating: 0, count: sealed.count - tagBytes)
        var outLen: UInt64 = 0
        let rc = key.withUnsafeBytes { k in
            fn(&out, &outLen, nil, sealed, UInt64(sealed.count), ad, UInt64(ad.count), nonce,
               k.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        guard rc == 0 else { throw .authenticationFailed }
        return out
    }
}
