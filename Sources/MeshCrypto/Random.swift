import CSodium
import MeshCore

public typealias MeshRandom = RandomSource

/// The system's cryptographically secure randomness, through libsodium's
/// `randombytes_buf` (getrandom(2) on Linux). The real node injects this; tests and the
/// simulator inject `SeededRandom` instead.
public struct SodiumRandom: RandomSource, Sendable {
    public init() { Sodium.ready() }

    public mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        if let base = buffer.baseAddress, buffer.count > 0 { randombytes_buf(base, buffer.count) }
    }

    public mutating func next() -> UInt64 {
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { fill($0) }
        return v
    }
}
