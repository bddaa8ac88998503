#if canImport(Glibc)
import Glibc
#endif

/// The clock a node's protocol time comes from: CLOCK_BOOTTIME on Linux, which keeps
/// counting while the machine is suspended (CLOCK_MONOTONIC, NIO's clock, stops). Time
/// that counts toward reclaim, leases and the fence must include a suspend: a laptop
/// asleep longer than the reclaim time must wake knowing it (docs/pool.md, "Catching up").
enum BootClock {
    /// Nanoseconds since boot, suspend included.
    static func nanoseconds() -> Int64 {
        #if os(Linux)
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        #else
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        #endif
    }
}
