import MeshCore
import MeshWire

/// Anti-entropy: the paged digest exchange that repairs what gossip missed, and the updates
/// it sends (docs/gossip.md).
extension Gossip {
    mutating func sendDigest(to endpoint: Endpoint, reply: Bool, _ out: inout [GossipOutput]) {
        counters.syncs += 1
        syncSession &+= 1
        ensureSortedKeys()
        var entries: [DigestEntry] = []
        entries.reserveCapacity(sortedKeys.count + 1)
        let mine = DigestEntry(key: me.node.digestKey, incarnation: me.incarnation, status: me.left ? .left : .alive)
        var placed = false
        for (key, id) in sortedKeys {
            if !placed, mine.key <= key { entries.append(mine); placed = true }
            if let m = members[id] { entries.append(m.digest) }
        }
        if !placed { entries.append(mine) }
        for p in keyRangePages(entries, key: \.key, perPage: (settings.maxPayloadSize - 64) / DigestEntry.size) {
            send(.sync(SyncPage(session: syncSession, reply: reply, last: p.last, lo: p.lo, hi: p.hi, entries: Array(p.items))), to: endpoint, &out)
        }
    }

    mutating func handleSync(_ page: SyncPage, from source: Endpoint, now: Instant, _ out: inout [GossipOutput]) {
        var theirs: [UInt64: DigestEntry] = [:]
        theirs.reserveCapacity(page.entries.count)
        for e in page.entries { theirs[e.key] = e }
        var toSend: [Update] = []
        let myKey = me.node.digestKey
        if (page.lo...page.hi).contains(myKey) {
            if let t = theirs[myKey] {
                if !seedKnowsMe, t.incarnation >= me.incarnation, seeds.contains(source) { seedKnowsMe = true }
                if t.status == .suspect || t.status == .dead, t.incarnation >= me.incarnation { accusedSelf(t.incarnation, &out) }
                let mine = DigestEntry(key: myKey, incarnation: me.incarnation, status: me.left ? .left : .alive)
                if mine.isNewer(than: t) { toSend.append(.alive(me)) }
            } else {
                toSend.append(.alive(me))
            }
        }
        ensureSortedKeys()
        var k = lowerBound(page.lo)
        while k < sortedKeys.count, sortedKeys[k].key <= page.hi {
            let (key, id) = sortedKeys[k]
            k += 1
            guard let m = members[id] else { continue }
            if let t = theirs[key], !m.digest.isNewer(than: t) { continue }
            toSend.append(.alive(m.record))
            switch m.status {
            case .suspect: toSend.append(.suspect(target: id, incarnation: m.statusIncarnation, from: me.node))
            case .dead: toSend.append(.dead(target: id, incarnation: m.statusIncarnation, from: me.node))
            case .alive, .left: break
            }
        }
        sendUpdates(toSend, to: source, &out)
        if !page.reply && page.last { sendDigest(to: source, reply: true, &out) }
    }

    /// Sends updates directly (not through the broadcast queue), packed under the size budget.
    mutating func sendUpdates(_ updates: [Update], to endpoint: Endpoint, _ out: inout [GossipOutput]) {
        var batch: [Update] = []
        var size = 0
        let budget = settings.maxPayloadSize - GossipPacket.overhead
        for u in updates {
            let s = u.wireBytes.count
            if !batch.isEmpty, size + s > budget || batch.count == GossipMessage.updateLimit {
                send(.gossip(updates: batch), to: endpoint, &out)
                batch = []
                size = 0
            }
            batch.append(u)
            size += s
        }
        if !batch.isEmpty { send(.gossip(updates: batch), to: endpoint, &out) }
    }
}
