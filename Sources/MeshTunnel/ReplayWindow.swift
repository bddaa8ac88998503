/// The anti-replay window of RFC 6479 ("IPsec Anti-Replay Algorithm without Bit Shifting"),
/// sized as wireguard-go's: a ring of 128 64-bit words, of which one word is always being
/// recycled, so 8,192 − 64 = 8,128 counters behind the highest seen are tracked.
///
/// Call `accept` only for a packet that has already authenticated: an unauthenticated
/// counter must never move the window. Allocates only when made (once per session).
public struct ReplayWindow: Sendable {
    static let wordBits = 64
    static let ringWords = 128
    /// How far behind the highest counter seen a counter may still be accepted.
    public static let size = UInt64(ringWords * wordBits - wordBits)  // 8,128

    var ring: [UInt64]
    /// The highest counter accepted so far.
    public private(set) var highest: UInt64 = 0
    var seenAny = false

    public init() { ring = [UInt64](repeating: 0, count: Self.ringWords) }

    /// Whether `counter` is new (never accepted, not too old, below `limit`); if it is,
    /// records it. O(1) except when the window jumps forward (then O(words cleared) ≤ 128).
    public mutating func accept(_ counter: UInt64, limit: UInt64) -> Bool {
        guard counter < limit else { return false }
        let block = counter >> 6
        if !seenAny || counter > highest {
            let current = seenAny ? highest >> 6 : 0
            if !seenAny {
                for i in 0..<Self.ringWords { ring[i] = 0 }
            } else {
                let diff = min(block - current, UInt64(Self.ringWords))
                var i: UInt64 = 1
                while i <= diff {
                    ring[Int((current &+ i) & UInt64(Self.ringWords - 1))] = 0
                    i += 1
                }
            }
            highest = counter
            seenAny = true
        } else if highest - counter > Self.size {
            return false
        }
        let word = Int(block & UInt64(Self.ringWords - 1))
        let bit = UInt64(1) << (counter & 63)
        let old = ring[word]
        ring[word] = old | bit
        return old & bit == 0
    }
}
