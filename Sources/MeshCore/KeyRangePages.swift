/// Splits items sorted by a 64-bit key into pages of at most `perPage` items that each
/// cover a contiguous key range: the first starts at 0, the last ends at `UInt64.max`,
/// and together they cover every key exactly once, so a receiver can tell "missing from
/// this page's range" from "on another page". Items with equal keys stay on one page
/// (which may then run over `perPage`). Used by the anti-entropy digests of gossip and pool.
public func keyRangePages<T>(_ items: [T], key: (T) -> UInt64, perPage: Int)
    -> [(lo: UInt64, hi: UInt64, last: Bool, items: ArraySlice<T>)]
{
    var pages: [(lo: UInt64, hi: UInt64, last: Bool, items: ArraySlice<T>)] = []
    let per = max(1, perPage)
    var start = 0
    var lo: UInt64 = 0
    while true {
        var end = min(items.count, start + per)
        while end < items.count, end > start, key(items[end]) == key(items[end - 1]) { end += 1 }
        let last = end == items.count
        let hi = last ? UInt64.max : key(items[end]) - 1
        pages.append((lo, hi, last, items[start..<end]))
        if last { return pages }
        lo = hi + 1
        start = end
    }
}
