import MeshCore
import MeshWire

/// Updates waiting to be piggybacked, each sent at most `limit` times, fewest-sent first.
/// A newer update about the same member replaces the queued one (memberlist's
/// TransmitLimitedQueue, with buckets by transmit count instead of a btree).
struct BroadcastQueue: Sendable {
    struct Item: Sendable {
        var update: Update
        var size: Int
        var transmits: Int
        var generation: UInt64
    }

    private var items: [NodeID: Item] = [:]
    /// buckets[t] holds subjects whose item has been sent t times (lazily cleaned).
    private var buckets: [[(NodeID, UInt64)]] = []
    private var nextGeneration: UInt64 = 0

    var count: Int { items.count }
    var isEmpty: Bool { items.isEmpty }

    mutating func enqueue(_ update: Update) {
        let size = update.wireBytes.count
        nextGeneration &+= 1
        items[update.subject] = Item(update: update, size: size, transmits: 0, generation: nextGeneration)
        push(update.subject, generation: nextGeneration, bucket: 0)
    }

    private mutating func push(_ id: NodeID, generation: UInt64, bucket: Int) {
        while buckets.count <= bucket { buckets.append([]) }
        buckets[bucket].append((id, generation))
    }

    /// Takes updates that fit in `budget` bytes, fewest transmissions first, counting each
    /// as sent once more and dropping those sent `limit` times.
    mutating func take(budget: Int, limit: Int, excluding: NodeID? = nil) -> [Update] {
        var out: [Update] = []
        var used = 0
        var requeue: [(NodeID, UInt64, Int)] = []
        var b = 0
        var misses = 0
        while b < buckets.count, used < budget, misses <= 8, out.count < GossipMessage.updateLimit {
            var i = 0
            while i < buckets[b].count {
                let (id, gen) = buckets[b][i]
                guard let item = items[id], item.generation == gen, item.transmits == b else {
                    buckets[b].swapAt(i, buckets[b].count - 1)
                    buckets[b].removeLast()
                    continue
                }
                if id == excluding || used + item.size > budget {
                    // Near a full packet, looking further for a small enough item costs more
                    // than it saves: a few misses and this packet is done.
                    misses += 1
                    if misses > 8 { break }
                    i += 1
                    continue
                }
                buckets[b].swapAt(i, buckets[b].count - 1)
                buckets[b].removeLast()
                used += item.size
                out.append(item.update)
                let t = item.transmits + 1
                if t >= limit {
                    items[id] = nil
                } else {
                    items[id]!.transmits = t
                    requeue.append((id, gen, t))
                }
                if used >= budget || out.count >= GossipMessage.updateLimit { break }
            }
            b += 1
        }
        for (id, gen, t) in requeue { push(id, generation: gen, bucket: t) }
        return out
    }

    func contains(_ id: NodeID) -> Bool { items[id] != nil }
}
