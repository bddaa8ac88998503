extension RandomAccessCollection {
    /// The index of the first element for which `isBefore` is false, in a collection where
    /// every element for which it is true comes first (binary search; `endIndex` if none).
    @inlinable
    public func partitionPoint(_ isBefore: (Element) throws -> Bool) rethrows -> Index {
        var lo = startIndex
        var n = count
        while n > 0 {
            let half = n / 2
            let mid = index(lo, offsetBy: half)
            if try isBefore(self[mid]) {
                lo = index(after: mid)
                n -= half + 1
            } else {
                n = half
            }
        }
        return lo
    }
}
