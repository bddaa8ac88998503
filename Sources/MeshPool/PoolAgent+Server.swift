import MeshCore

/// The server side of the exchange: answering a live member's DISCOVER with an offer held
/// for it, and its REQUEST with signed lease and share grants, persisted before the ACK
/// (docs/pool.md, "The exchange").
extension PoolAgent {
    mutating func serveDiscover(from client: NodeID, xid x: UInt32, requested: UInt32?, now: Instant, _ out: inout [Output]) {
        // A client that already holds a lease here gets it back (sticky).
        if let lease = view.leases(of: client).first {
            guard lease.range.first >= view.pool.first, view.owner(of: lease.range.first)?.owner == client else { return }
            counters.offers += 1
            out.append(.send(signed(.offer(xid: x, address: lease.range.first, share: nil,
                                                                   holdMillis: UInt32(settings.holdTime.nanoseconds / 1_000_000))), to: client))
            return
        }
        if !mayGrant(now: now) {
            counters.fencedRefusals += 1
            out.append(.send(signed(.nak(xid: x, reason: .fenced)), to: client))
            return
        }
        var free = RangeSet(view.freeSpace(of: me).map(\.range))
        for (c, h) in holds where c != client {
            free = free.subtracting(RangeSet(AddressRange(h.address, h.address)))
            if let s = h.share { free = free.subtracting(RangeSet(s)) }
        }
        guard !free.isEmpty else {
            out.append(.send(signed(.nak(xid: x, reason: .noSpace)), to: client))
            return
        }
        let address: UInt32
        if let r = requested, free.contains(r) {
            address = r
        } else {
            address = free.ranges.max { ($0.count, $1.first) < ($1.count, $0.first) }!.first
        }
        free = free.subtracting(RangeSet(AddressRange(address, address)))
        let share = joinerShare(for: client, from: free)
        holds[client] = Hold(xid: x, address: address, share: share, expires: now + settings.holdTime)
        counters.offers += 1
        out.append(.send(signed(.offer(xid: x, address: address, share: share,
                                                               holdMillis: UInt32(settings.holdTime.nanoseconds / 1_000_000))), to: client))
    }

    mutating func serveRequest(from client: NodeID, xid x: UInt32, address: UInt32, now: Instant, _ out: inout [Output]) {
        // The sticky case: the client's lease already exists; send it again.
        if let lease = view.leases(of: client).first, lease.range.first == address, let g = view.grants[lease.grant] {
            // Its ancestors in batches first (a deep chain does not fit one packet), then the ACK.
            for batch in batches(chain(of: g).dropLast()) { out.append(.send(signed(.grants(batch)), to: client)) }
            out.append(.send(signed(.ack(xid: x, grants: [g])), to: client))
            return
        }
        // Its lease is a holding of the checkpoint this view is built on: send that; the
        // client binds once its view holds the lease.
        if let lease = view.leases(of: client).first, lease.range.first == address, let base = view.base, view.grants[lease.grant] == nil {
            sendCheckpoint(base, to: client, final: true, &out)
            out.append(.send(signed(.ack(xid: x, grants: [])), to: client))
            return
        }
        // One lease per member: a client that holds one gets no second.
        if !view.leases(of: client).isEmpty {
            counters.refusedSecondLease += 1
            out.append(.send(signed(.nak(xid: x, reason: .taken)), to: client))
            return
        }
        guard let hold = holds[client], hold.xid == x, hold.address == address else {
            out.append(.send(signed(.nak(xid: x, reason: .expired)), to: client))
            return
        }
        holds[client] = nil
        guard view.owner(of: address)?.owner == me, view.owner(of: address)?.kind == .space else {
            out.append(.send(signed(.nak(xid: x, reason: .taken)), to: client))
            return
        }
        guard mayGrant(now: now) else {
            counters.fencedRefusals += 1
            out.append(.send(signed(.nak(xid: x, reason: .fenced)), to: client))
            return
        }
        let granted = commit(lease: address, share: hold.share, to: client, now: now, &out)
        // The chain up to genesis first (it may take several packets), then the ACK.
        let ancestors = granted.first.map { chain(of: $0).filter { g in !granted.contains(g) } } ?? []
        for batch in batches(ancestors) { out.append(.send(signed(.grants(batch)), to: client)) }
        counters.acks += 1
        out.append(.send(signed(.ack(xid: x, grants: granted)), to: client))
        push(granted, &out, excluding: client)
    }

    /// Signs the lease (and share) grants, records them and asks for them to be persisted.
    @discardableResult
    mutating func commit(lease address: UInt32, share: AddressRange?, to client: NodeID, now: Instant, _ out: inout [Output]) -> [Grant] {
        var made: [Grant] = []
        func parentRef(for r: AddressRange) -> Bytes32? {
            view.freeSpace(of: me).first { $0.range.contains(r) }?.grant
        }
        if let p = parentRef(for: AddressRange(address, address)),
           let g = signNext(Grant(grantor: me, seq: 0, parent: p, range: AddressRange(address, address), grantee: client, kind: .lease)) {
            made.append(g)
        }
        if let s = share, let p = parentRef(for: s), let g = signNext(Grant(grantor: me, seq: 0, parent: p, range: s, grantee: client, kind: .space)) {
            made.append(g)
        }
        out.append(.persist(grants: made, seq: seq))
        return made
    }

    /// A packet from this node, signed with its identity key.
    func signed(_ message: PoolMessage) -> PoolPacket {
        var p = PoolPacket(sender: me, message: message)
        p.signature = auth.sign(p.signedBytes)
        return p
    }

    /// Signs `g` with the next grant seq and records it; nil (and the seq not used) if this
    /// view refuses it. A node's seqs run without gaps: a vote's weight needs all of its
    /// signer's grants up to it (RingView.voteWeight).
    mutating func signNext(_ g: Grant) -> Grant? {
        var g = g
        g.seq = seq + 1
        g.sign(with: auth)
        guard view.insert(g) == .added else { return nil }
        seenAt[g.ref] = lastNow
        seq += 1
        return g
    }

    /// A free address of this node's own space for itself: the preferred one if free, else
    /// the lowest free one.
    mutating func pickFromOwnSpace() -> UInt32? {
        let free = view.freeSpace(of: me)
        guard !free.isEmpty else { return nil }
        let want = preferred ?? Self.derivedAddress(for: me, pool: view.pool)
        if free.contains(where: { $0.range.contains(want) }) { return want }
        return free.min { $0.range < $1.range }!.range.first
    }
}
