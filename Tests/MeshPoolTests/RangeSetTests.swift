import MeshCore
import MeshPool
import Testing

/// RangeSet's linear-time operations agree with plain sets of addresses, and keep one
/// canonical form (sorted, disjoint, touching ranges merged) whatever the order of input.
@Suite struct RangeSetTests {
    func randomSet(_ rng: inout SeededRandom, near base: UInt32) -> (RangeSet, Set<UInt32>) {
        var rs: [AddressRange] = []
        var plain = Set<UInt32>()
        for _ in 0..<Int(rng.next() % 8) {
            let a = base + UInt32(rng.next() % 60)
            let b = a + UInt32(rng.next() % 8)
            rs.append(AddressRange(a, b))
            for x in a...b { plain.insert(x) }
        }
        // Built two ways: at once, and one range at a time in the order drawn.
        var one = RangeSet()
        for r in rs { one.insert(r) }
        #expect(one == RangeSet(rs))
        return (one, plain)
    }

    func addresses(_ s: RangeSet) -> Set<UInt32> {
        var out = Set<UInt32>()
        for r in s.ranges { for x in r.first...r.last { out.insert(x) } }
        return out
    }

    func canonical(_ s: RangeSet) -> Bool {
        zip(s.ranges, s.ranges.dropFirst()).allSatisfy { UInt64($0.last) + 1 < UInt64($1.first) } && s.ranges.allSatisfy { $0.first <= $0.last }
    }

    @Test(arguments: [UInt32(0), 1000, UInt32.max - 80])
    func operationsAgreeWithSetsOfAddresses(base: UInt32) {
        var rng = SeededRandom(seed: UInt64(base) &+ 17)
        for _ in 0..<2000 {
            let (a, pa) = randomSet(&rng, near: base)
            let (b, pb) = randomSet(&rng, near: base)
            let r = AddressRange(base + UInt32(rng.next() % 40), base + 40 + UInt32(rng.next() % 40))
            let u = a.union(b), d = a.subtracting(b), i = a.intersection(r)
            #expect(addresses(u) == pa.union(pb))
            #expect(addresses(d) == pa.subtracting(pb))
            #expect(addresses(i) == pa.filter { r.contains($0) })
            #expect(canonical(u) && canonical(d) && canonical(i) && canonical(a))
            #expect(u == RangeSet(a.ranges + b.ranges), "union is canonical")
            #expect(a.count == UInt64(pa.count))
            for x in base..<(base + 70) { #expect(a.contains(x) == pa.contains(x)) }
        }
    }
}
