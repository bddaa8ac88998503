import Dispatch
import Foundation
import Logging
import MeshCore
import MeshCrypto
import MeshGossip
import MeshNode
import MeshPool
import MeshTransport
import MeshTunnel
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The control socket's answers (status, leases, send, ping, listen), for `meshwork` commands.
extension Daemon {
    // MARK: - Control

    /// The snapshot `meshwork status` prints and the metrics endpoint exports.
    func status(_ node: MeshNode, now: Instant, listen: String, metrics: String?) -> ControlProtocol.Status {
        let token = config.token
        let tunName = tun?.name, mtu = config.mtu
        let usable = Self.usableRange(token)
        var view = node.pool?.view
        var leases = 0
        var owned: [AddressRange] = []
        for o in view?.ownership() ?? [] {
            if o.kind == .lease { leases += 1 } else if o.owner == node.gossip.me.node { owned.append(o.range) }
        }
        let g = node.gossip
        var pool = node.pool
        // Not granting: fenced, or still catching up since it started.
        let fenced = pool.map { p in var p = p; return !p.mayGrant(now: now) } ?? false
        let departures = (pool?.departures(now: now) ?? []).map { d in
            ControlProtocol.Departure(nodeId: d.node.hex, fingerprint: d.node.fingerprint, name: g.member(d.node)?.record.name,
                                      goneSeconds: d.gone.seconds)
        }
        var counts = ControlProtocol.MemberCounts()
        counts.alive = 1
        for m in g.members.values {
            switch m.status {
            case .alive: counts.alive += 1
            case .suspect: counts.suspect += 1
            case .dead: counts.dead += 1
            case .left: counts.left += 1
            }
        }
        let c = node.counters, gc = g.counters
        let tc = node.sessions?.tunnel.counters ?? TunnelCounters(), mc = node.sessions?.messenger.counters ?? MessengerCounters()
        let oc = node.overlay
        let rc = node.sessions?.relay ?? SessionLayer.RelayCounters()
        let pc = node.pool?.counters
        let status = ControlProtocol.Status(
            nodeId: g.me.node.hex, fingerprint: g.me.node.fingerprint, name: g.me.name, meshId: token.meshID.description,
            meshName: token.name, listen: listen, endpoints: g.me.endpoints.map(\.description), incarnation: g.me.incarnation,
            members: counts, uptimeSeconds: Date().timeIntervalSince(started), awareness: g.awareness,
            counters: .init(datagramsIn: c.datagramsIn, datagramsOut: c.datagramsOut, bytesIn: c.bytesIn, bytesOut: c.bytesOut,
                            dropsNotSealedForMesh: c.drops.notSealedForMesh, dropsMalformed: c.drops.malformed,
                            dropsOther: c.drops.badVersion + c.drops.unknownType + c.drops.unhandledType,
                            badSignatures: gc.badSignatures, probes: gc.probes, probesFailed: gc.probesFailed, refutations: gc.refutations,
                            poolRejectedSignatures: node.pool?.view.counters.badSignatures ?? 0,
                            poolRejectedChains: node.pool?.view.counters.badChains ?? 0,
                            poolConflicts: node.pool?.counters.conflicts ?? 0,
                            poolReclaims: node.pool?.counters.reclaims ?? 0, poolVotes: node.pool?.counters.votes ?? 0,
                            poolRejectedReclaims: node.pool?.view.counters.badReclaims ?? 0,
                            poolForcedReclaims: node.pool?.view.counters.forcedReclaims ?? 0,
                            handshakesInitiated: tc.handshakesInitiated, handshakesCompleted: tc.handshakesCompleted,
                            handshakesFailed: tc.handshakesFailed, sessions: node.sessions?.tunnel.sessionCount(now: now) ?? 0,
                            packetsIn: tc.packetsIn, packetsOut: tc.packetsOut, payloadBytesIn: tc.bytesIn, payloadBytesOut: tc.bytesOut,
                            dropsBadMAC: tc.drops.badMAC, dropsReplay: tc.drops.replay, dropsUnknownIndex: tc.drops.unknownIndex,
                            dropsNotMember: tc.drops.notMember, dropsMalformedSession: tc.drops.malformed, dropsExpired: tc.drops.expired,
                            dropsStaged: tc.drops.staged, messagesSent: mc.messagesSent, messagesAcknowledged: mc.messagesAcknowledged,
                            messagesFailed: mc.messagesFailed, messagesReceived: mc.messagesDelivered, messageRetransmits: mc.retransmits,
                            overlayPacketsFromTun: oc.packetsFromTun, overlayPacketsToTun: oc.packetsToTun,
                            overlayDropsNoRoute: oc.dropsNoRoute, overlayDropsSpoofed: oc.dropsSpoofed, overlayDropsNotIPv4: oc.dropsNotIPv4,
                            overlayDropsWrongDestination: oc.dropsWrongDestination,
                            relayForwarded: rc.forwarded, relayForwardedBytes: rc.forwardedBytes, relayRefused: rc.refused,
                            relaySentThrough: rc.sentThrough, relayReceivedThrough: rc.receivedThrough,
                            sendErrors: runner?.sendErrors,
                            poolDonations: pc?.donations, poolMerges: pc?.merges, poolCatchUps: pc?.catchUps, poolResumes: pc?.resumes,
                            poolLeasesExpired: pc?.leasesExpired, poolWeightlessVotes: node.pool?.view.counters.weightlessVotes,
                            poolBadPacketSignatures: pc?.badPacketSignatures, poolRefusedNonMembers: pc?.refusedNonMembers,
                            poolRefusedSecondLease: pc?.refusedSecondLease, poolRateLimitedGrants: pc?.rateLimitedGrants,
                            poolSentOnSessions: c.poolSentOnSessions, poolReceivedOnSessions: c.poolReceivedOnSessions,
                            poolCheckpoint: node.pool.map { Int($0.checkpointNumber) }, poolCheckpointsTrusted: pc?.checkpointsTrusted,
                            poolCheckpointsWeighed: pc?.checkpointsWeighed, poolCheckpointsRefused: pc?.checkpointsRefused),
            address: node.pool?.address.map { IPv4Address($0).description },
            pool: token.pool.description, poolState: node.pool?.isWaitingForMembers == true ? "waiting" : Self.describe(node.pool?.phase), poolPrefixLength: Int(token.pool.length),
            poolWaiting: node.pool?.waitingReason, poolFenced: fenced, reclaimSeconds: token.reclaimSeconds,
            poolDepartures: departures, tun: tunName, mtu: tunName == nil ? nil : mtu,
            poolAddresses: Int(usable.count), poolLeases: leases, poolFreeAddresses: Int(usable.count) - leases,
            poolOwnedAddresses: Int(owned.reduce(0) { $0 + $1.count }), ownedRanges: owned.map(\.description), metrics: metrics)
        return status
    }

    func answer(_ request: ControlProtocol.Request, listen: String) -> EventLoopFuture<Data> {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        switch request.command {
        case "status":
            let metricsAddress = metricsEndpoint
            return runner.inspect { [self] node, now in
                (try? encoder.encode(self.status(node, now: now, listen: listen, metrics: metricsAddress))) ?? Data()
            }
        case "leases":
            return runner.inspect { node, _ in
                let g = node.gossip
                var view = node.pool?.view
                var leases: [ControlProtocol.Lease] = []
                var owners: [ControlProtocol.Owner] = []
                func name(_ id: NodeID) -> String? { id == g.me.node ? g.me.name : g.member(id)?.record.name }
                func state(_ id: NodeID) -> String { id == g.me.node ? "alive" : g.member(id)?.status.description ?? "unknown" }
                for o in view?.ownership() ?? [] {
                    if o.kind == .lease {
                        let grantor = view?.grants[o.grant]?.grantor ?? o.owner
                        leases.append(ControlProtocol.Lease(
                            address: IPv4Address(o.range.first).description, holderId: o.owner.hex, holderFingerprint: o.owner.fingerprint,
                            holderName: name(o.owner), grantorFingerprint: grantor.fingerprint, state: state(o.owner), isSelf: o.owner == g.me.node))
                    } else {
                        owners.append(ControlProtocol.Owner(range: o.range.description, size: o.range.count,
                                                            ownerFingerprint: o.owner.fingerprint, ownerName: name(o.owner)))
                    }
                }
                return (try? encoder.encode(ControlProtocol.Leases(leases: leases, owners: owners))) ?? Data()
            }
        case "peers":
            return runner.inspect { node, now in
                let g = node.gossip
                var peers = [ControlProtocol.Peer(
                    nodeId: g.me.node.hex, fingerprint: g.me.node.fingerprint, name: g.me.name, endpoints: g.me.endpoints.map(\.description),
                    status: g.leaving ? "left" : "alive", incarnation: g.me.incarnation, lastHeardSecondsAgo: 0, isSelf: true)]
                let tunnel = node.sessions?.tunnel
                for m in g.members.values.sorted(by: { ($0.record.name, $0.node) < ($1.record.name, $1.node) }) {
                    var p = ControlProtocol.Peer(
                        nodeId: m.node.hex, fingerprint: m.node.fingerprint, name: m.record.name,
                        endpoints: m.record.endpoints.map(\.description), status: m.status.description,
                        incarnation: m.record.incarnation, lastHeardSecondsAgo: m.lastHeard.map { (now - $0).seconds }, isSelf: false)
                    if let tunnel, tunnel.isPeer(m.node) {
                        p.session = tunnel.hasSession(with: m.node, now: now)
                        switch tunnel.route(to: m.node) {
                        case .relay(let r)?:
                            p.path = "relay"
                            p.relayFingerprint = r.fingerprint
                            p.relayName = g.member(r)?.record.name
                        case .direct?: p.path = "direct"
                        case nil: break
                        }
                        p.handshakeRTTMilliseconds = tunnel.lastRTT(of: m.node).map { $0.seconds * 1000 }
                    }
                    peers.append(p)
                }
                return (try? encoder.encode(ControlProtocol.Peers(peers: peers))) ?? Data()
            }
        case "reclaim-plan", "reclaim":
            let target = request.target ?? ""
            let admin = config.token.admin
            return runner.perform { node, now -> (Data, [NodeOutput]) in
                func fail(_ why: String) -> (Data, [NodeOutput]) { (Self.errorReply(why), []) }
                let id: NodeID
                switch Self.resolve(node: target, in: node) {
                case .success(let found): id = found
                case .failure(let why): return fail(why.message)
                }
                func failure(_ e: PoolAgent.ForceReclaimError) -> (Data, [NodeOutput]) {
                    switch e {
                    case .ownNode: return fail("\(id.fingerprint) is this node; a node cannot reclaim from itself")
                    case .alive:
                        return fail("\(id.fingerprint) is alive (membership says so); reclaim refuses a live node. Stop it, or wait until it is declared dead")
                    case .holdsNothing: return fail("\(id.fingerprint) holds no part of the pool in this node's view; nothing to reclaim")
                    case .noAdminKey:
                        return fail("this mesh has no admin key (its token names none), so nothing can force a reclaim: any member could otherwise take the pool. "
                            + "Meshwork reclaims \(id.fingerprint)'s space by itself once it has been gone the reclaim time and members holding most of the pool agree")
                    case .catchingUp:
                        return fail("this node is still catching up with the mesh (after a start or a suspend); try again in a few seconds")
                    case .notAuthorized:
                        return fail("the admin signatures do not verify: --admin-key must be the key made with this mesh (mesh inspect shows its ID)")
                    }
                }
                let plan: [ForcedHolding]
                switch node.forceReclaimPlan(id) {
                case .success(let p): plan = p
                case .failure(let e): return failure(e)
                }
                if request.command == "reclaim-plan" {
                    let reply = ControlProtocol.ReclaimPlan(
                        nodeId: id.hex, fingerprint: id.fingerprint, admin: admin?.hex ?? "",
                        holdings: plan.map { .init(holding: $0.holding.hex, cutoff: $0.cutoff, successor: $0.successor.hex) })
                    return ((try? encoder.encode(reply)) ?? Data(), [])
                }
                var auths: [ForcedHolding: ReclaimVote] = [:]
                for a in request.authorizations ?? [] {
                    guard let h = Hex.decode(a.holding).flatMap({ Bytes32($0) }), let succ = NodeID(hex: a.successor),
                          let signer = a.signer.flatMap({ NodeID(hex: $0) }), let sig = a.signature.flatMap({ Hex.decode($0) }), sig.count == 64 else {
                        return fail("a malformed authorisation (holding, cutoff, successor, signer, signature in hex)")
                    }
                    guard signer == admin else { return failure(.notAuthorized) }
                    auths[ForcedHolding(holding: h, cutoff: a.cutoff, successor: succ)] = ReclaimVote(signer: signer, signature: sig)
                }
                let (result, outputs) = node.forceReclaim(id, authorizations: auths, now: now)
                switch result {
                case .success(let ranges):
                    let reply = ControlProtocol.Reclaimed(nodeId: id.hex, fingerprint: id.fingerprint, ranges: ranges.map(\.description), forced: true)
                    return ((try? encoder.encode(reply)) ?? Data(), outputs)
                case .failure(let e): return failure(e)
                }
            }
        case "send":
            return send(request)
        case "ping":
            return ping(request)
        case "leave":
            let stop = stopHandler
            return runner.inspect { node, _ in
                struct Reply: Encodable { let left: Bool; let released: String? }
                let address = node.pool?.address.map { IPv4Address($0).description }
                stop?(true)
                return (try? encoder.encode(Reply(left: true, released: address))) ?? Data()
            }
        default:
            return runner.loop.makeSucceededFuture(
                Self.errorReply("unknown command '\(request.command)'"))
        }
    }

    /// A control-protocol error line.
    static func errorReply(_ why: String) -> Data {
        (try? JSONEncoder().encode(ControlProtocol.ErrorReply(error: why))) ?? Data()
    }

    // MARK: - Messages

    /// `meshwork send`: resolves the peer, queues the message, answers when the peer
    /// acknowledged it or with why not.
    func send(_ request: ControlProtocol.Request) -> EventLoopFuture<Data> {
        let loop = runner.loop
        let fail: @Sendable (String) -> EventLoopFuture<Data> = { loop.makeSucceededFuture(Self.errorReply($0)) }
        guard let text = request.data, let data = Data(base64Encoded: text) else { return fail("send: no message data in the request") }
        let bytes = [UInt8](data)
        let timeout = max(0.1, min(request.timeoutSeconds ?? 10, 3600))
        let target = request.target ?? ""
        let runner = self.runner!
        struct Peer: Sendable { let id: NodeID; let label: String; let name: String? }
        return runner.inspect { node, _ -> Result<Peer, ResolveError> in
            Self.resolvePeer(target, in: node).map { id in
                let name = node.gossip.member(id)?.record.name
                return Peer(id: id, label: "\(name ?? "?") (\(id.fingerprint))", name: name)
            }
        }.flatMap { resolved -> EventLoopFuture<Data> in
            let peer: Peer
            switch resolved {
            case .success(let p): peer = p
            case .failure(let e): return fail(e.message)
            }
            let started = NIODeadline.now()
            let nanos = Int64(timeout * 1e9)
            return runner.send(to: peer.id, bytes, timeout: .nanoseconds(nanos)).flatMap { () -> EventLoopFuture<Data> in
                let ms = Double((NIODeadline.now() - started).nanoseconds) / 1e6
                let reply = ControlProtocol.Sent(nodeId: peer.id.hex, fingerprint: peer.id.fingerprint, name: peer.name, bytes: bytes.count, milliseconds: ms)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                return loop.makeSucceededFuture((try? encoder.encode(reply)) ?? Data())
            }.flatMapError { error -> EventLoopFuture<Data> in
                let t = String(format: "%g", timeout)
                switch error as? SendFailure {
                case .timedOut?:
                    return runner.inspect { node, now in node.sessions?.tunnel.hasSession(with: peer.id, now: now) ?? false }.flatMap { session in
                        fail(session
                            ? "timed out after \(t)s: \(peer.label) has a session with this node but did not acknowledge the message"
                            : "timed out after \(t)s: \(peer.label) did not answer the handshake (stopped, or its port unreachable from here)")
                    }
                case .unreachable?: return fail("unreachable: \(peer.label) did not answer the handshake, or stopped being a live member")
                case .notAMember?: return fail("unreachable: \(peer.label) is not a live member (see `meshwork peers`)")
                case .tooLarge(let limit)?: return fail("message too large: \(bytes.count) bytes; the limit is \(limit) bytes (1 MiB)")
                case .queueFull?, .stopped?: return fail("\(peer.label): \(error)")
                case nil: return fail("\(error)")
                }
            }
        }
    }

    /// `meshwork ping`: one overlay-level round trip to a member, and the path it took.
    func ping(_ request: ControlProtocol.Request) -> EventLoopFuture<Data> {
        let runner = self.runner!
        let loop = runner.loop
        let fail: @Sendable (String) -> EventLoopFuture<Data> = { loop.makeSucceededFuture(Self.errorReply($0)) }
        let timeout = max(0.1, min(request.timeoutSeconds ?? 2, 60))
        let target = request.target ?? ""
        return runner.inspect { node, _ in Self.resolvePeer(target, in: node) }.flatMap { resolved -> EventLoopFuture<Data> in
            let id: NodeID
            switch resolved {
            case .success(let found): id = found
            case .failure(let e): return fail(e.message)
            }
            return runner.ping(id, timeout: .nanoseconds(Int64(timeout * 1e9))).flatMap { rtt in
                runner.inspect { node, _ -> Data in
                    var pong = ControlProtocol.Pong(nodeId: id.hex, fingerprint: id.fingerprint, name: node.gossip.member(id)?.record.name,
                                                    milliseconds: rtt.seconds * 1000, path: "direct")
                    if case .relay(let r)? = node.sessions?.tunnel.route(to: id) {
                        pong.path = "relay"
                        pong.relayFingerprint = r.fingerprint
                        pong.relayName = node.gossip.member(r)?.record.name
                    }
                    return (try? JSONEncoder().encode(pong)) ?? Data()
                }
            }.flatMapError { error in
                let name = "\(id.fingerprint)"
                switch error as? SendFailure {
                case .timedOut?: return fail("no reply from \(name) within \(String(format: "%g", timeout))s")
                default: return fail("\(name): \(error)")
                }
            }
        }
    }

    /// A peer for `send`: a member by name, node ID (prefix) or overlay address, that is
    /// alive (or suspect) now.
    static func resolvePeer(_ text: String, in node: MeshNode) -> Result<NodeID, ResolveError> {
        var id: NodeID
        if let a = IPv4Address(text) {
            var view = node.pool?.view
            guard let lease = view?.ownership().first(where: { $0.kind == .lease && $0.range.first == a.value }) else {
                return .failure(ResolveError(message: "unknown peer '\(text)': no member holds that overlay address (see `meshwork leases`)"))
            }
            id = lease.owner
        } else {
            switch resolve(node: text, in: node) {
            case .success(let found): id = found
            case .failure(let e):
                return .failure(ResolveError(message: e.message.hasPrefix("no node") ? "unknown peer: " + e.message : e.message))
            }
        }
        if id == node.id { return .failure(ResolveError(message: "'\(text)' is this node; send to another member")) }
        guard let m = node.gossip.member(id) else {
            return .failure(ResolveError(message: "unreachable: \(id.fingerprint) holds pool space but is not a known member (see `meshwork peers`)"))
        }
        guard m.status <= .suspect, !m.record.left else {
            return .failure(ResolveError(message: "unreachable: \(m.record.name) (\(id.fingerprint)) is \(m.status) according to membership; the message was not sent"))
        }
        return .success(id)
    }

    /// Hands a received message to every `listen` subscriber, or keeps it for the next one.
    func publish(_ message: ReceivedMessage) {
        // On the event loop: the node is ours to read without copying.
        let line = runner.inspectNow { node in Self.describe(message, in: node) }
        guard let data = try? JSONEncoder().encode(line) else { return }
        let sinks = listeners.withLockedValue { l -> [@Sendable (Data) -> Void] in
            if l.sinks.isEmpty {
                l.backlog.append(data)
                var bytes = l.backlog.reduce(0) { $0 + $1.count }
                while l.backlog.count > Self.backlogLimit || (bytes > Self.backlogBytes && l.backlog.count > 1) {
                    bytes -= l.backlog.removeFirst().count
                }
            }
            return l.sinks.keys.sorted().compactMap { l.sinks[$0] }
        }
        for write in sinks { write(data) }
    }

    static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    static func describe(_ m: ReceivedMessage, in node: MeshNode) -> ControlProtocol.Message {
        var view = node.pool?.view
        let address = view?.ownership().first { $0.kind == .lease && $0.owner == m.from }.map { IPv4Address($0.range.first).description }
        let text = String(validating: m.bytes, as: UTF8.self)
        return ControlProtocol.Message(
            from: m.from.hex, fingerprint: m.from.fingerprint, name: node.gossip.member(m.from)?.record.name, address: address,
            receivedAt: m.receivedAt.formatted(Self.timeFormat), bytes: m.bytes.count, text: text,
            base64: text == nil ? Data(m.bytes).base64EncodedString() : nil)
    }

    /// A `listen` subscriber: gets the backlog, then every message as it arrives.
    func subscribe(_ write: @escaping @Sendable (Data) -> Void) -> @Sendable () -> Void {
        let (id, backlog) = listeners.withLockedValue { l -> (Int, [Data]) in
            let id = l.next
            l.next += 1
            l.sinks[id] = write
            let b = l.backlog
            l.backlog = []
            return (id, b)
        }
        for d in backlog { write(d) }
        return { [weak self] in _ = self?.listeners.withLockedValue { $0.sinks.removeValue(forKey: id) } }
    }

    struct ResolveError: Error { let message: String }

    /// A node named by its name, its node ID or a prefix of it (at least 4 hex digits),
    /// among the members gossip knows and the owners in the pool's view.
    static func resolve(node text: String, in node: MeshNode) -> Result<NodeID, ResolveError> {
        var known = Set(node.gossip.members.keys)
        known.insert(node.id)
        if var view = node.pool?.view { for o in view.ownership() { known.insert(o.owner) } }
        func name(_ id: NodeID) -> String? { id == node.id ? node.gossip.me.name : node.gossip.member(id)?.record.name }
        let lower = text.lowercased()
        var matches = known.filter { name($0) == text }
        if matches.isEmpty, lower.count >= 4, lower.allSatisfy(\.isHexDigit) { matches = known.filter { $0.hex.hasPrefix(lower) } }
        switch matches.count {
        case 1: return .success(matches.first!)
        case 0: return .failure(ResolveError(message: "no node named '\(text)' or with an ID starting '\(text)' is known here (see `meshwork peers` and `meshwork leases`)"))
        default:
            let list = matches.sorted().map { "\($0.fingerprint) (\(name($0) ?? "?"))" }.joined(separator: ", ")
            return .failure(ResolveError(message: "'\(text)' matches \(matches.count) nodes: \(list); give more of the node ID"))
        }
    }

    static func describe(_ phase: PoolAgent.Phase?) -> String {
        switch phase {
        case nil: return "off"
        case .idle?: return "idle"
        case .discovering?: return "discovering"
        case .requesting?: return "requesting"
        case .bound?: return "bound"
        case .exhausted?: return "retrying"
        }
    }
}
