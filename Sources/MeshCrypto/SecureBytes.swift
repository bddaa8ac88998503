import CSodium

/// A fixed-size buffer for secret material in libsodium-guarded memory
/// (`sodium_malloc`: guard pages around it, locked out of swap where the system allows),
/// zeroed and freed (`sodium_free`) when the last reference goes.
///
/// Contents are written only while the buffer is being built (`init(count:fill:)`) and
/// are read-only afterwards, which is what makes sharing it across threads safe.
public final class SecureBytes: @unchecked Sendable {
    private let pointer: UnsafeMutableRawPointer
    public let count: Int

    /// Allocates `count` bytes and lets `fill` write them. If `fill` throws, the memory is
    /// zeroed and freed before the error propagates.
    public init<E: Error>(count: Int, fill: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        Sodium.ready()
        guard let p = sodium_malloc(max(count, 1)) else {
            // Only when the process is out of memory or address space.
            fatalError("sodium_malloc(\(count)) failed: out of memory")
        }
        pointer = p
        self.count = count
        sodium_memzero(p, max(count, 1))
        try fill(UnsafeMutableRawBufferPointer(start: p, count: count))
    }

    /// Copies `bytes` into guarded memory. The caller should zero its own copy.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count) { (dst: UnsafeMutableRawBufferPointer) in dst.copyMemory(from: bytes) }
    }

    deinit { sodium_free(pointer) }  // zeroes, then unmaps

    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Constant-time equality of contents.
    public func constantTimeEquals(_ other: SecureBytes) -> Bool {
        withUnsafeBytes { a in other.withUnsafeBytes { b in constantTimeEqual(a, b) } }
    }
}

extension SecureBytes {
    /// `count` bytes from the given random source.
    public convenience init(random count: Int, using rng: inout some MeshRandom) {
        self.init(count: count) { (dst: UnsafeMutableRawBufferPointer) in rng.fill(dst) }
    }
}
