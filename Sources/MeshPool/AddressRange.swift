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
    public private(set) var ranges: [AddressRange]

    public init() { ranges = [] }
    public init(_ r: AddressRange) { ranges = [r] }
    public init(_ rs: [AddressRange]) {
        ranges = []
        for r in rs.sorted() { insert(r) }
    }

    public var isEmpty: Bool { ranges.isEmpty }
    public var count: UInt64 { ranges.reduce(0) { $0 + $1.count } }
    public func contains(_ a: UInt32) -> Bool { ranges.contains { $0.contains(a) } }

    /// Adds `r`, merging with neighbours.
    public mutating func insert(_ r: AddressRange) {
        var merged = r
        var out: [AddressRange] = []
        out.reserveCapacity(ranges.count + 1)
        for x in ranges {
            if UInt64(x.last) + 1 < UInt64(merged.first) || UInt64(merged.last) + 1 < UInt64(x.first) {
                out.append(x)
            } else {
                merged = AddressRange(min(x.first, merged.first), max(x.last, merged.last))
            }
        }
        out.append(merged)
        out.sort()
        ranges = out
    }

    public func intersection(_ r: AddressRange) -> RangeSet {
        var s = RangeSet()
        s.ranges = ranges.compactMap { $0.intersection(r) }
        return s
    }

    public func subtracting(_ other: RangeSet) -> RangeSet {
        var out = RangeSet()
        for x in ranges {
            var pieces = [x]
            for o in other.ranges {
                pieces = pieces.flatMap { p -> [AddressRange] in
                    guard p.intersection(o) != nil else { return [p] }
                    var keep: [AddressRange] = []
                    if p.first < o.first { keep.append(AddressRange(p.first, o.first - 1)) }
                    if p.last > o.last { keep.append(AddressRange(o.last + 1, p.last)) }
                    return keep
                }
            }
            out.ranges.append(contentsOf: pieces)
        }
        return out
    }

    public func union(_ other: RangeSet) -> RangeSet {
        var s = self
        for r in other.ranges { s.insert(r) }
        return s
    }

    public var description: String { ranges.isEmpty ? "(none)" : ranges.map(\.description).joined(separator: ", ") }
}
