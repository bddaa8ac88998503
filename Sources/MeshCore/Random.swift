/// Where randomness comes from. Protocol cores take one of these instead of asking the
/// system, so that tests and the simulator can replay a run from a seed. The real node
/// uses libsodium's `randombytes_buf` (`SodiumRandom` in MeshCrypto).
public protocol RandomSource: RandomNumberGenerator {
    /// Fills the buffer with random bytes.
    mutating func fill(_ buffer: UnsafeMutableRawBufferPointer)
}

extension RandomSource {
    public mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var i = 0
        while i < buffer.count {
            var word = next()
            let n = Swift.min(8, buffer.count - i)
            withUnsafeBytes(of: &word) { w in
                for j in 0..<n { buffer[i + j] = w[j] }
            }
            i += n
        }
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { fill($0) }
        return out
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator.
/// Deterministic: the same seed gives the same sequence on every platform. Not for keys
/// that protect anything real.
public struct SeededRandom: RandomSource, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
