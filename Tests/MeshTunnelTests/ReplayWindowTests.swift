import Testing
import MeshCore
@testable import MeshTunnel

@Suite("Replay window (RFC 6479)")
struct ReplayWindowTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        /// Counters fed in order, each with whether it must be accepted.
        let steps: [(UInt64, Bool)]
        var limit: UInt64 = .max - (1 << 13)
        var testDescription: String { name }
    }

    static let w = ReplayWindow.size  // 8,128

    static let cases: [Case] = [
        Case(name: "in order", steps: (0..<300).map { ($0, true) }),
        Case(name: "duplicate", steps: [(0, true), (1, true), (1, false), (0, false), (2, true), (2, false)]),
        Case(name: "out of order within the window", steps: [(10, true), (3, true), (9, true), (0, true), (3, false), (11, true), (1, true)]),
        Case(name: "the oldest still inside", steps: [(w, true), (0, true), (0, false)]),
        Case(name: "too old", steps: [(w + 1, true), (0, false), (1, true), (1, false)]),
        Case(name: "far jump clears the ring", steps: [(5, true), (100_000, true), (5, false), (100_000 - w, true), (100_000 - w - 1, false), (99_999, true)]),
        Case(name: "jump of exactly the ring", steps: [(63, true), (63 + 8192, true), (63, false), (64 + 8192 - w, true)]),
        Case(name: "ring word reuse", steps: (0..<20_000).map { ($0 * 7, true) } + [(20_000 * 7 - 7, false), (20_000 * 7 - 8, true)]),
        Case(name: "counter at the limit refused", steps: [(99, true), (100, false), (101, false), (98, true)], limit: 100),
        Case(name: "counter wrap: the last counters of 64 bits", steps: [
            (.max - (1 << 13) - 2, true), (.max - (1 << 13) - 1, true), (.max - (1 << 13), false), (.max, false),
            (0, false), (.max - (1 << 13) - 3, true), (.max - (1 << 13) - 1, false),
        ]),
    ]

    @Test("accepts and refuses as the table says", arguments: cases)
    func table(_ c: Case) {
        var window = ReplayWindow()
        for (i, (counter, expected)) in c.steps.enumerated() {
            let got = window.accept(counter, limit: c.limit)
            #expect(got == expected, "step \(i): counter \(counter)")
        }
    }

    @Test("every counter in a shuffled window is accepted once")
    func shuffled() {
        var window = ReplayWindow()
        var rng = SeededRandom(seed: 7)
        let counters = Array(UInt64(0)..<UInt64(ReplayWindow.size)).shuffled(using: &rng)
        // The largest first, so every other one is within the window behind it.
        let top = window.accept(ReplayWindow.size - 1, limit: .max)
        #expect(top)
        var accepted = 1
        for c in counters where c != ReplayWindow.size - 1 { if window.accept(c, limit: .max) { accepted += 1 } }
        #expect(accepted == Int(ReplayWindow.size))
        var again = 0
        for c in counters where window.accept(c, limit: .max) { again += 1 }
        #expect(again == 0)
    }
}
