import CSodium

/// BLAKE2b (RFC 7693) through libsodium's `crypto_generichash`: plain or keyed,
/// output 16–64 bytes, key 16–64 bytes.
public enum Blake2b {
    public static let minOutput = Int(crypto_generichash_BYTES_MIN)
    public static let maxOutput = Int(crypto_generichash_BYTES_MAX)
    public static let maxKey = Int(crypto_generichash_KEYBYTES_MAX)

    public static func hash(_ data: [UInt8], outputLength: Int = 32) -> [UInt8] {
        hash(data, outputLength: outputLength, keyBytes: UnsafeRawBufferPointer(start: nil, count: 0))
    }

    public static func hash(_ data: [UInt8], outputLength: Int = 32, key: SymmetricKey) -> [UInt8] {
        key.withUnsafeBytes { hash(data, outputLength: outputLength, keyBytes: $0) }
    }

    /// Keyed with raw key bytes (0, or 16–64 of them). Used for test vectors and by other
    /// primitives of this module that already hold key bytes in guarded memory.
    public static func hash(_ data: [UInt8], outputLength: Int, keyBytes: UnsafeRawBufferPointer) -> [UInt8] {
        Sodium.ready()
        precondition((minOutput...maxOutput).contains(outputLength), "BLAKE2b output must be 16...64 bytes")
        precondition(keyBytes.count <= maxKey, "BLAKE2b key must be at most 64 bytes")
        var out = [UInt8](repeating: 0, count: outputLength)
        data.withUnsafeBufferPointer { d in
            _ = crypto_generichash(
                &out, outputLength, d.baseAddress, UInt64(d.count),
                keyBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), keyBytes.count)
        }
        return out
    }

    /// Incremental hashing, for data that arrives in pieces. libsodium's state is a
    /// 64-byte-aligned opaque struct, so it lives in memory allocated here with that alignment.
    public final class Hasher {
        private let state: UnsafeMutableRawPointer
        private let outputLength: Int

        public init(outputLength: Int = 32) {
            Sodium.ready()
            precondition((minOutput...maxOutput).contains(outputLength), "BLAKE2b output must be 16...64 bytes")
            self.outputLength = outputLength
            state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
            _ = crypto_generichash_init(OpaquePointer(state), nil, 0, outputLength)
        }

        deinit {
            sodium_memzero(state, crypto_generichash_statebytes())
            state.deallocate()
        }

        public func update(_ data: [UInt8]) {
            data.withUnsafeBufferPointer { d in
                _ = crypto_generichash_update(OpaquePointer(state), d.baseAddress, UInt64(d.count))
            }
        }

        public func finalize() -> [UInt8] {
            var out = [UInt8](repeating: 0, count: outputLength)
            _ = crypto_generichash_final(OpaquePointer(state), &out, outputLength)
            return out
        }
    }
}
