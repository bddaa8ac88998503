import MeshCore
import MeshSim
import Testing

@Suite("Messages in the simulator")
struct MessageSimulationTests {
    @Test("two nodes exchange 10,000 messages over 10% loss and reordering: each arrives once, in order", arguments: [UInt64(1), 2])
    func lossy(seed: UInt64) {
        var s = MessageScenario()
        s.count = 10_000
        s.loss = 0.10
        s.seed = seed
        let r = s.run()
        #expect(r.sent == 20_000)
        #expect(r.delivered == 20_000)
        #expect(r.duplicates == 0)
        #expect(r.missing == 0)
        #expect(r.inOrder)
        #expect(r.corrupted == 0)
        #expect(r.acknowledged == 20_000)
        #expect(r.failed == 0)
        // The conditions were what they claim: loss happened, reordering forced
        // retransmissions, and sessions were rekeyed along the way.
        #expect(Double(r.datagramsLost) / Double(r.datagrams) > 0.08)
        #expect(r.retransmits > 1000)
        #expect(r.handshakes >= 4)
    }

    @Test("a lost link fails messages at their deadline, none are delivered twice")
    func deadLink() {
        var s = MessageScenario()
        s.count = 50
        s.loss = 1.0
        s.limit = .seconds(30)
        let r = s.run()
        #expect(r.delivered == 0)
        #expect(r.acknowledged == 0)
        #expect(r.sent == 100)  // 50 each way
        #expect(r.failed == 100)
    }
}
