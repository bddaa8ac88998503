import MeshCore

/// A closed range of IPv4 addresses as 32-bit values, `first...last`.
public struct AddressRange: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var first: UInt32
    public var last: UInt32

    public init(_ first: UInt32, _ last: UInt32) {
        self.first = first
        self.last = last
    }

    public var count: UInt64 { UInt64(last) - UInt64(first) + 1 }
    public func contains(_ a: UInt32) -> Bool { first <= a && a <= last }
    public func contains(_ r: AddressRange) -> Bool { first <= r.first && r.last <= last }

    public func intersection(_ r: AddressRange) -> AddressRange? {
        let f = max(first, r.first), l = min(last, r.last)
        return f <= l ? AddressRange(f, l) : nil
    }

    public static func < (a: AddressRange, b: AddressRange) -> Bool { a.first != b.first ? a.first < b.first : a.last < b.last }

    public var description: String {
        first == last ? "\(IPv4Address(first))" : "\(IPv4Address(first))-\(IPv4Address(last))"
    }
}

/// A set of addresses as sorted, disjoint, non-adjacent ranges.
public struct RangeSet: Hashable, Sendable, CustomStringConvertible {
    /// Sorted, disjoint and never adjacent (touching ranges are merged): one canonical form
    /// per set of addresses, which every operation keeps, in time linear in the ranges.
    public private(set) var ranges: [AddressRange]

    public init() { ranges = [] }
    public init(_ r: AddressRange) { ranges = [r] }
    public init(_ rs: [AddressRange]) {
        ranges = Self.coalesced(rs.sorted())
    }

    /// Merges overlapping or touching neighbours of a list sorted by `first`.
    static func coalesced(_ sorted: [AddressRange]) -> [AddressRange] {
        var out: [AddressRange] = []
        out.reserveCapacity(sorted.count)
        for r in sorted {
            if let last = out.last, UInt64(r.first) <= UInt64(last.last) + 1 {
                if r.last > last.last { out[out.count - 1] = AddressRange(last.first, r.last) }
            } else {
                out.append(r)
            }
        }
        return out
    }

    public var isEmpty: Bool { ranges.isEmpty }
    public var count: UInt64 { ranges.reduce(0) { $0 + $1.count } }

    /// The index of the first range that ends at or after `a`.
    func lowerIndex(_ a: UInt32) -> Int {
        ranges.partitionPoint { $0.last < a }
    }

    public func contains(_ a: UInt32) -> Bool {
        let i = lowerIndex(a)
        return i < ranges.count && ranges[i].contains(a)
    }

    /// Adds `r`, merging with neighbours.
    public mutating func insert(_ r: AddressRange) {
        // The ranges that overlap or touch r: from the first ending at or after r.first - 1
        // to the last starting at or before r.last + 1.
        let lo = lowerIndex(r.first == 0 ? 0 : r.first - 1)
        var hi = lo
        var merged = r
        while hi < ranges.count, UInt64(ranges[hi].first) <= UInt64(r.last) + 1 {
            merged = AddressRange(min(merged.first, ranges[hi].first), max(merged.last, ranges[hi].last))
            hi += 1
        }
        ranges.replaceSubrange(lo..<hi, with: [merged])
    }

    public func intersection(_ r: AddressRange) -> RangeSet {
        var s = RangeSet()
        var i = lowerIndex(r.first)
        while i < ranges.count, ranges[i].first <= r.last {
            if let x = ranges[i].intersection(r) { s.ranges.append(x) }
            i += 1
        }
        return s
    }

    public func subtracting(_ other: RangeSet) -> RangeSet {
        var out = RangeSet()
        out.ranges.reserveCapacity(ranges.count)
        var j = 0
        let o = other.ranges
        for x in ranges {
            var start = UInt64(x.first)
            let end = UInt64(x.last)
            // Skip what ends before this range.
            while j < o.count, UInt64(o[j].last) < start { j += 1 }
            var k = j
            while k < o.count, UInt64(o[k].first) <= end {
                if UInt64(o[k].first) > start { out.ranges.append(AddressRange(UInt32(start), o[k].first - 1)) }
                start = max(start, UInt64(o[k].last) + 1)
                if UInt64(o[k].last) >= end { break }
                k += 1
            }
            if start <= end { out.ranges.append(AddressRange(UInt32(start), UInt32(end))) }
            j = k
        }
        return out
    }

    public func union(_ other: RangeSet) -> RangeSet {
        if other.ranges.isEmpty { return self }
        if ranges.isEmpty { return other }
        var both: [AddressRange] = []
        both.reserveCapacity(ranges.count + other.ranges.count)
        var i = 0, j = 0
        while i < ranges.count || j < other.ranges.count {
            if j == other.ranges.count || (i < ranges.count && ranges[i].first <= other.ranges[j].first) {
                both.append(ranges[i]); i += 1
            } else {
                both.append(other.ranges[j]); j += 1
            }
        }
        var s = RangeSet()
        s.ranges = Self.coalesced(both)
        return s
    }

    public var description: String { ranges.isEmpty ? "(none)" : ranges.map(\.description).joined(separator: ", ") }
}
