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

/// `meshwork up`: one node, in the foreground, until SIGTERM or SIGINT.
///
/// Start-up order: state directory and its lock → identity (made if absent) → saved state
/// (incarnation, peers) → the next incarnation saved before any packet is sent → UDP
/// socket → node → join → control socket. Shutdown: announce leaving, let gossip carry it
/// for a second, save known peers, close.
public final class Daemon: @unchecked Sendable {
    public struct Config: Sendable {
        public var token: MeshToken
        public var keyPath: String?
        public var state: StatePaths
        public var listenHost: String
        public var listenPort: Int
        public var peers: [HostPort]
        public var name: String
        public var settings: GossipSettings = .lan
        /// The address to ask for (`up --address`).
        public var address: UInt32?
        /// The TUN device to carry overlay packets through (nil: none, `--no-tun`), and its MTU.
        public var tunName: String?
        public var mtu = Daemon.defaultMTU
        /// Also hand received messages to `NodeRunner.messages` (for a program embedding the node).
        public var streamMessages = false
        /// Stop on SIGTERM and SIGINT (off for a node embedded in another program: it calls `stop`).
        public var handleSignals = true
        /// Tell systemd (`$NOTIFY_SOCKET`) when the node is ready and when it stops.
        public var notifySystemd = true
        /// Serve Prometheus text at http://host:port/metrics (`up --metrics`; port 0: any free port).
        public var metricsHost: String?
        public var metricsPort = 0
        /// Grants the pool view holds before this node, as proposer, starts a checkpoint
        /// (`up --checkpoint-every`; nil: the default, 0: never).
        public var checkpointEvery: Int?

        public init(token: MeshToken, keyPath: String?, state: StatePaths, listenHost: String, listenPort: Int, peers: [HostPort], name: String) {
            self.token = token
            self.keyPath = keyPath
            self.state = state
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.peers = peers
            self.name = name
        }
    }

    public enum StartError: Error, CustomStringConvertible {
        case locked(String)
        case bind(String, String)
        case other(String)

        public var description: String {
            switch self {
            case .locked(let dir):
                return "another 'meshwork up' is already running with state directory \(dir); stop it, or pass another --state"
            case .bind(let addr, let why):
                return "cannot listen on \(addr): \(why); choose another --listen address or port"
            case .other(let m): return m
            }
        }
    }

    /// 1,500 (Ethernet) − 20 (IPv4) − 8 (UDP) − 30 (our transport header and tag) = 1,442;
    /// 1,420 leaves room for an IPv6 underlay (40-byte header), as WireGuard does.
    public static let defaultMTU = 1420
    /// This build's version (`meshwork version`, the `meshwork_info` metric).
    public static let version = "0.1.0"

    let config: Config
    let logger: Logger
    var tun: TunDevice?
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var runner: NodeRunner!
    var control: ControlServer?
    var metrics: MetricsServer?
    /// Where the metrics server listens, as bound (set before the node starts).
    var metricsEndpoint: String?
    /// The running node and its UDP address, once started: what a scrape reads.
    let live = NIOLockedValueBox<(runner: NodeRunner, listen: String)?>(nil)
    var runnerStarted = false
    /// Whether the pool has ever been reachable by majority in this run (event loop only).
    var hadQuorum = false
    var lockFD: Int32 = -1
    let started = Date()
    let statePath: String
    let poolPath: String
    let poolLogPath: String
    /// pool.log, open for appending once the saved state is read (PoolLog.swift).
    var poolLog: PoolLog?
    var incarnation: UInt64 = 0
    /// Grants and sequence number as last made durable (guarded: written from the event loop).
    let poolState = NIOLockedValueBox<PoolSaved>(PoolSaved())
    let poolDirty = NIOLockedValueBox(false)
    var stopHandler: (@Sendable (Bool) -> Void)?
    /// Called once the node is up (socket bound, joined, control socket open), off the
    /// event loop: for programs that embed a node (the benchmark) and use its runner.
    public var onReady: (@Sendable (NodeRunner) -> Void)?
    var signalSources: [any DispatchSourceSignal] = []
    let dirty = NIOLockedValueBox(false)
    /// `listen` subscribers, and messages that came while none was connected (the newest
    /// `backlogLimit`, handed to the next subscriber).
    let listeners = NIOLockedValueBox<(next: Int, sinks: [Int: @Sendable (Data) -> Void], backlog: [Data])>((0, [:], []))
    static let backlogLimit = 256
    /// And at most this many bytes of them (JSON lines), the oldest dropped first.
    static let backlogBytes = 32 << 20

    public init(config: Config, logger: Logger) {
        self.config = config
        self.logger = logger
        statePath = config.state.directory + "/node.json"
        poolPath = config.state.directory + "/pool.json"
        poolLogPath = config.state.directory + "/pool.log"
    }

    /// The usable addresses of the token's pool: the CIDR without its first and last.
    public static func usableRange(_ token: MeshToken) -> AddressRange {
        AddressRange(token.pool.network.value + 1, token.pool.last.value - 1)
    }

    /// Runs until a signal; returns the process exit status. A start that fails part-way
    /// undoes what it did (sockets, threads, device, lock) before it throws.
    public func run() throws -> Int32 {
        do {
            return try runNode()
        } catch {
            abandonStart()
            throw error
        }
    }

    /// After a failed start: close whatever was opened, so an embedding program keeps nothing.
    func abandonStart() {
        metrics?.close()
        control?.close()
        if let runner, runnerStarted { _ = try? runner.close().wait() }
        tun?.close()
        try? group.syncShutdownGracefully()
        if lockFD >= 0 {
            close(lockFD)
            lockFD = -1
        }
    }

    func runNode() throws -> Int32 {
        let dir = config.state.directory
        try AtomicFile.makeDirectory(dir, mode: 0o700)
        try lock(dir)

        if let name = config.tunName {
            do {
                let device = try TunDevice.open(name: name)
                try device.setMTU(config.mtu)
                try device.up()
                tun = device
            } catch {
                throw StartError.other(error.description)
            }
        }

        let keyPath = config.keyPath ?? config.state.identityKey
        let (identity, created) = try KeyStore.loadOrCreateIdentity(at: keyPath)
        if created { logger.notice("made a new node identity", metadata: ["path": "\(keyPath)", "node": "\(identity.nodeID.fingerprint)"]) }

        let meshId = config.token.meshID.description
        let saved = try NodeStateFile.load(from: statePath, meshId: meshId)
        let savedPool = try PoolStateFile.load(from: poolPath, meshId: meshId)
        // What was made durable after that snapshot (PoolLog.swift).
        let logged = try PoolLog.read(path: poolLogPath, meshId: meshId)
        let baseRead = try savedPool?.decodedCheckpoint(path: poolPath)
        var grantsRead = try savedPool?.decodedGrants(path: poolPath) ?? []
        var votesRead = try savedPool?.decodedVotes(path: poolPath) ?? [:]
        var seqRead = savedPool?.seq ?? 0
        for (i, r) in logged.enumerated() {
            let d = try r.decoded(path: poolLogPath, line: i + 2)
            grantsRead += d.grants
            seqRead = max(seqRead, d.seq)
            votesRead.merge(d.votes) { _, new in new }
        }
        let (savedGrants, savedVotes, savedSeq) = (grantsRead, votesRead, seqRead)
        poolState.withLockedValue {
            $0 = PoolSaved(grants: Dictionary(savedGrants.map { ($0.ref, $0) }, uniquingKeysWith: { a, _ in a }), seq: savedSeq,
                           votes: savedVotes, base: baseRead)
        }
        poolLog = try PoolLog(path: poolLogPath, meshId: meshId)
        // Metrics before anything is saved or sent: a port that is taken fails the start
        // before this run takes an incarnation or joins anything.
        if let host = config.metricsHost {
            try startMetrics(host: host, node: identity.nodeID.fingerprint, mesh: meshId)
        }
        incarnation = (saved?.incarnation ?? 0) + 1
        // Saved before any packet leaves: a crash now can never reuse this incarnation.
        try NodeStateFile(meshId: meshId, incarnation: incarnation, peers: saved?.peers ?? []).save(to: statePath)

        var seedTexts = config.peers
        seedTexts += config.token.bootstrap
        if config.peers.isEmpty, let saved {
            seedTexts += saved.peers.flatMap { $0.endpoints.compactMap { try? HostPort(parsing: $0) } }
        }
        let seeds = Array(Set(seedTexts.flatMap { Self.resolve($0) }))

        let auth = Ed25519RecordAuthenticator(identity: identity)
        let x25519 = try identity.publicKey.x25519().raw
        let x25519Secret = identity.x25519SecretKey()
        let psk = config.token.secret.derive(.dataPlanePSK)
        let wallAtStart = UInt64(max(0, Date().timeIntervalSince1970 * 1e9))
        let sealer = GossipSealer(secret: config.token.secret)
        var random = SodiumRandom()
        let seed = random.next()
        let settings = config.settings
        let name = config.name
        let inc = incarnation
        let listenHost = config.listenHost
        let usable = Self.usableRange(config.token)
        let genesis = config.token.genesis
        let admin = config.token.admin
        let poolSeq = savedSeq
        // Fresh only with neither node.json nor pool state (pool.json, or records in
        // pool.log): a node that kept any has run before and catches up first
        // (docs/pool.md, "Lost or old state").
        let firstStart = saved == nil && savedPool == nil && logged.isEmpty
        let preferred = config.address
        let poolSeed = random.next()
        let checkpointEvery = config.checkpointEvery
        let reclaimSeconds = config.token.reclaimSeconds
        let leaseSeconds = config.token.leaseSeconds

        runner = NodeRunner(loop: group.next(), logger: logger) { [weak self] event, gossip in
            self?.log(event, gossip)
        }
        runner.onPersist = { [weak self] grants, seq, votes, checkpoint in
            try self?.persistPool(grants, seq: seq, votes: votes, checkpoint: checkpoint)
        }
        runner.onPoolEvent = { [weak self] event in
            self?.log(event)
            switch event {
            case .leased(let a): self?.configureTun(address: a)
            case .lost, .released, .expired: self?.configureTun(address: nil)  // not ours any more
            default: break
            }
        }
        runner.onMessage = { [weak self] message in self?.publish(message) }
        // `up` hands messages to `listen` only; a program embedding the node may read the stream.
        runner.streamMessages = config.streamMessages
        runner.onSession = { [weak self] peer in self?.logger.debug("session established", metadata: ["peer": "\(peer.fingerprint)"]) }
        let bound: SocketAddress
        do {
            bound = try runner.start(host: config.listenHost, port: config.listenPort, seeds: seeds) { address, now in
                let endpoints = Self.advertised(listenHost: listenHost, bound: address)
                let record = MemberRecord(node: identity.nodeID, incarnation: inc, name: name, endpoints: endpoints, x25519: x25519)
                let view = RingView.restored(pool: usable, genesis: genesis, admin: admin, auth: auth, base: baseRead, grants: savedGrants)
                var poolSettings = PoolAgent.Settings()
                poolSettings.reclaimTime = .seconds(Double(reclaimSeconds))
                poolSettings.leaseTime = .seconds(Double(leaseSeconds))
                if let every = checkpointEvery { poolSettings.checkpointEvery = every }
                // A node with an earlier run behind it (node.json or pool.json) catches up with the mesh
                // before it grants, whatever its pool.json says (docs/pool.md).
                let pool = PoolAgent(me: identity.nodeID, view: view, auth: auth, seq: poolSeq, settings: poolSettings, preferred: preferred,
                                     votes: savedVotes, fresh: firstStart, seed: poolSeed, now: now)
                var sodium = SodiumRandom()
                let tunnel = Tunnel(staticKey: x25519Secret, psk: psk, random: sodium,
                                    epochNanos: wallAtStart &- UInt64(max(0, now.nanoseconds)))
                let sessions = SessionLayer(tunnel: tunnel, messenger: Messenger(epoch: sodium.next()))
                return MeshNode(gossip: Gossip(me: record, settings: settings, auth: auth, seed: seed, now: now), pool: pool,
                                sessions: sessions, sealer: sealer)
            }.wait()
        } catch {
            throw StartError.bind("\(config.listenHost):\(config.listenPort)", "\(error)")
        }
        runnerStarted = true
        let boundEndpoint = Endpoint(bound)?.description ?? "\(bound)"
        live.withLockedValue { $0 = (runner, boundEndpoint) }
        if let tun {
            runner.attach(tun)
            // A restarted node may hold its lease already.
            if let a = try runner.inspect({ node, _ in node.pool?.address }).wait() { configureTun(address: a) }
            logger.notice("overlay device up", metadata: ["tun": "\(tun.name)", "mtu": "\(config.mtu)"])
        }

        let controlLoop = group.next()
        control = try ControlServer.start(path: dir + "/control.sock", group: group, handler: { [weak self] request in
            guard let self else { return controlLoop.makeFailedFuture(StartError.other("shutting down")) }
            return self.answer(request, listen: boundEndpoint)
        }, subscribe: { [weak self] write in
            self?.subscribe(write) ?? {}
        }, onSubscriberCut: { [weak self] in
            self?.logger.warning("a 'meshwork listen' client stopped reading: disconnected it with 32 MiB of messages waiting (they are dropped)")
        })

        logger.notice("meshwork up", metadata: [
            "node": "\(identity.nodeID.fingerprint)", "name": "\(name)", "mesh": "\(config.token.name) (\(meshId))",
            "listen": "\(boundEndpoint)", "incarnation": "\(incarnation)", "seeds": "\(seeds.map(\.description))",
        ])
        if seeds.isEmpty { logger.notice("no peers to join yet: waiting to be joined (give others --peer \(boundEndpoint))") }

        // Persist known peers within a second of a membership change.
        let loop = runner.loop
        loop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .seconds(1)) { [weak self] _ in
            guard let self else { return }
            if self.dirty.withLockedValue({ let d = $0; $0 = false; return d }) { self.savePeers() }
            if self.poolDirty.withLockedValue({ let d = $0; $0 = false; return d }) { self.saveView() }
        }

        let done = loop.makePromise(of: Int32.self)
        let stopping = NIOLockedValueBox(false)
        // SIGTERM/SIGINT: a temporary departure (the address stays this node's, sticky).
        // `meshwork leave`: for good, releasing the address and all owned space first.
        let stop: @Sendable (Bool) -> Void = { [weak self] release in
            guard let self, !stopping.withLockedValue({ let was = $0; $0 = true; return was }) else { return }
            self.logger.notice(release ? "leaving the mesh for good: releasing the address" : "leaving the mesh")
            self.runner.leave(linger: .seconds(1), release: release).whenComplete { _ in done.succeed(0) }
        }
        stopHandler = stop
        if config.handleSignals { installSignals { stop(false) } }
        // systemd (Type=notify): ready once the socket is bound, the control socket answers
        // and a SIGTERM would be handled.
        if config.notifySystemd {
            SystemdNotify.send("READY=1\nSTATUS=node \(identity.nodeID.fingerprint) listening on \(boundEndpoint)")
        }
        if let onReady, let runner { DispatchQueue.global().async { onReady(runner) } }
        runner.onFatal = { _ in
            if !stopping.withLockedValue({ let was = $0; $0 = true; return was }) { done.succeed(1) }
        }
        let status = try done.futureResult.wait()
        if config.notifySystemd { SystemdNotify.send("STOPPING=1") }
        metrics?.close()
        savePeers(blocking: true)  // here, on the main thread: never wait on the event loop
        runner.waitForPersists()
        saveView(blocking: true)
        compactPoolOnStop()
        control?.close()
        tun?.close()  // its reader hands packets to the event loop: stop it first
        try? group.syncShutdownGracefully()
        unlink(dir + "/control.sock")
        close(lockFD)
        lockFD = -1
        return status
    }

    /// Serves `GET /metrics` on `host:config.metricsPort`; a scrape before the node is up
    /// gets 503. Renders are cached for a second, so scrapes cannot load the event loop.
    func startMetrics(host: String, node: String, mesh: String) throws {
        let exporter = MetricsExporter(version: Self.version, node: node, mesh: mesh)
        let cache = NIOLockedValueBox<(at: NIODeadline, body: [UInt8])?>(nil)
        let endpoint = NIOLockedValueBox<String?>(nil)
        let loop = group.next()
        do {
            metrics = try MetricsServer.start(host: host, port: config.metricsPort, group: group) { [weak self] in
                guard let self, let (runner, listen) = self.live.withLockedValue({ $0 }) else {
                    return loop.makeFailedFuture(StartError.other("the node is not up yet"))
                }
                if let c = cache.withLockedValue({ $0 }), NIODeadline.now() < c.at + .seconds(1) { return loop.makeSucceededFuture(c.body) }
                let address = endpoint.withLockedValue { $0 }
                return runner.inspect { node, now in
                    let body = exporter.render(self.status(node, now: now, listen: listen, metrics: address))
                    cache.withLockedValue { $0 = (NIODeadline.now(), body) }
                    return body
                }
            }
        } catch {
            throw StartError.other("cannot serve metrics on \(host):\(config.metricsPort): \(error); choose another --metrics address or port")
        }
        metricsEndpoint = metrics?.localAddress.flatMap { Endpoint($0)?.description }
        endpoint.withLockedValue { $0 = metricsEndpoint }
        logger.notice("serving metrics", metadata: ["url": "http://\(metricsEndpoint ?? "?")/metrics"])
    }

    /// Gives the TUN device the leased address with the pool's prefix (the kernel then
    /// routes the whole pool to it). Called again when the lease changes.
    func configureTun(address: UInt32?) {
        guard let tun else { return }
        guard let address else {
            try? tun.setAddress(IPv4Address(0), prefixLength: 0)  // 0.0.0.0 removes it
            logger.notice("overlay address removed from the device", metadata: ["tun": "\(tun.name)"])
            return
        }
        do {
            try tun.setAddress(IPv4Address(address), prefixLength: Int(config.token.pool.length))
            logger.notice("overlay address on the device", metadata: ["tun": "\(tun.name)", "address": "\(IPv4Address(address))/\(config.token.pool.length)"])
        } catch {
            logger.error("\(error.description)")
        }
    }

    /// Stops the node as SIGTERM does (leaving for now, keeping the address); `run` returns.
    public func stop() { stopHandler?(false) }

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
                            poolDonations: pc?.donations, poolCatchUps: pc?.catchUps, poolResumes: pc?.resumes,
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

    // MARK: - Persistence

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

    /// Called on the runner's persist queue (off the event loop) before an ACK goes out:
    /// grants and seq must be on disk first; the runner holds the ACK until this returns.
    /// What is new is appended to `pool.log` (one write, one fsync); when the log outgrows
    /// the snapshot, `pool.json` is rewritten whole and the log cut back (PoolLog.swift).
    func persistPool(_ grants: [Grant], seq: UInt64, votes: [Bytes32: NodeID] = [:], checkpoint: PoolCheckpoint? = nil) throws {
        try poolState.withLockedValue { s in
            if let checkpoint, checkpoint.number > (s.base?.number ?? 0) {
                // The view moved onto a checkpoint: keep it, drop what lies inside its cut,
                // and write the state whole (the log's records are in it).
                s.base = checkpoint
                s.grants = s.grants.filter { !checkpoint.holdsInside($0.value) }
                return try writeSnapshot(s, cutting: poolLog)
            }
            let new = grants.filter { s.grants[$0.ref] == nil && !(s.base?.holdsInside($0) ?? false) }
            let newVotes = votes.filter { s.votes[$0.key] != $0.value }
            guard !new.isEmpty || seq > s.seq || !newVotes.isEmpty else { return }
            for g in new { s.grants[g.ref] = g }
            s.seq = max(s.seq, seq)
            s.votes.merge(newVotes) { _, new in new }
            guard let log = poolLog else { return try writeSnapshot(s, cutting: nil) }
            try log.append(PoolLogRecord(seq: s.seq, grants: new, votes: newVotes))
            // Compact once the log outgrows the snapshot (about 360 bytes a grant in either).
            if log.bytes > max(1 << 20, s.grants.count * 400) { try writeSnapshot(s, cutting: log) }
        }
    }

    /// Writes everything saved as a new `pool.json` (crash-safe), then cuts `log` (if any)
    /// back to its header: after a crash between the two, the log's records are read again
    /// on top of a snapshot that holds them, harmlessly.
    func writeSnapshot(_ s: PoolSaved, cutting log: PoolLog?) throws {
        try PoolStateFile(meshId: config.token.meshID.description, seq: s.seq, grants: Array(s.grants.values), votes: s.votes,
                          checkpoint: s.base).save(to: poolPath)
        try log?.reset()
    }

    /// On a clean stop: one `pool.json` holding everything, and an empty log.
    func compactPoolOnStop() {
        guard let log = poolLog else { return }
        do { try poolState.withLockedValue { s in try writeSnapshot(s, cutting: log) } } catch { logger.error("could not compact pool state: \(error)") }
    }

    /// Saves the grants the node's view holds that are not saved yet (so a restart keeps
    /// its lease and view).
    func saveView(blocking: Bool = false) {
        let log = logger
        snapshot(blocking: blocking, { node in (node.pool?.view.allGrants ?? [], node.pool?.seq ?? 0) }) { [self] pair in
            do { try persistPool(pair.0, seq: pair.1) } catch { log.error("could not save pool state: \(error)") }
        }
    }

    /// Reads from the node on its event loop, then writes what was read: later, or before
    /// returning with `blocking` (only ever off the event loop).
    func snapshot<T: Sendable>(blocking: Bool, _ read: @escaping @Sendable (MeshNode) -> T, write: @escaping @Sendable (T) -> Void) {
        let future = runner.inspect { node, _ in read(node) }
        if !blocking {
            future.whenSuccess(write)
        } else if let value = try? future.wait() {
            write(value)
        }
    }

    func log(_ event: PoolEvent) {
        poolDirty.withLockedValue { $0 = true }
        switch event {
        case .leased(let a): logger.notice("overlay address leased", metadata: ["address": "\(IPv4Address(a))"])
        case .lost(let a): logger.warning("overlay address lost to a conflicting grant; asking for another", metadata: ["address": "\(IPv4Address(a))"])
        case .declined(let a, let by):
            logger.warning("a node declined an address this node granted: it is held by another (conflict resolved against it)",
                           metadata: ["address": "\(IPv4Address(a))", "by": "\(by.fingerprint)"])
        case .exhausted: logger.warning("no member has free address space; retrying with backoff")
        case .released(let a): logger.notice("overlay address released", metadata: ["address": "\(IPv4Address(a))"])
        case .expired(let a):
            logger.warning("lease lapsed: cut off from members holding most of the pool for half the lease time; not using the address until they are reached",
                           metadata: ["address": "\(IPv4Address(a))"])
        case .reclaimed(let from, let range, let forced):
            logger.warning(forced ? "took over a node's space by hand (--force)" : "reclaimed the space of a node gone longer than the reclaim time",
                           metadata: ["from": "\(from.fingerprint)", "range": "\(range)"])
        case .fenced(true):
            logger.warning("fenced: the live members do not hold most of the pool; not granting addresses until they do")
        case .fenced(false):
            // Every node starts fenced (unreported) until it first reaches most of the pool.
            if hadQuorum {
                logger.notice("no longer fenced: in contact with members holding most of the pool")
            } else {
                logger.debug("in contact with members holding most of the pool: granting addresses")
            }
            hadQuorum = true
        }
    }

    /// Saves the incarnation and the peers now alive. `blocking` only off the event loop.
    func savePeers(blocking: Bool = false) {
        let meshId = config.token.meshID.description
        let inc = incarnation
        let path = statePath
        let log = logger
        snapshot(blocking: blocking, { node -> NodeStateFile in
            let peers = node.gossip.members.values
                .filter { $0.status <= .suspect }
                .sorted { $0.node < $1.node }
                .map { NodeStateFile.Peer(nodeId: $0.node.hex, name: $0.record.name, endpoints: $0.record.endpoints.map(\.description)) }
            return NodeStateFile(meshId: meshId, incarnation: Swift.max(inc, node.gossip.me.incarnation), peers: peers)
        }) { state in
            do { try state.save(to: path) } catch { log.error("could not save node state: \(error)") }
        }
    }

    func log(_ event: MembershipEvent, _ gossip: Gossip) {
        func who(_ id: NodeID) -> Logger.MetadataValue {
            "\(gossip.member(id)?.record.name ?? "?") (\(id.fingerprint))"
        }
        switch event {
        case .joined(let id): logger.info("member joined", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .updated(let id): logger.debug("member updated", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .suspected(let id): logger.info("member suspected", metadata: ["member": who(id)])
        case .recovered(let id): logger.info("member recovered", metadata: ["member": who(id)])
        case .died(let id): logger.warning("member dead", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .left(let id): logger.info("member left", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .forgotten(let id): logger.debug("member forgotten", metadata: ["member": "\(id.fingerprint)"])
        case .refuted(let inc):
            logger.info("refuted a suspicion about this node", metadata: ["incarnation": "\(inc)"])
            dirty.withLockedValue { $0 = true }
        }
    }

    // MARK: - Process plumbing

    func lock(_ dir: String) throws {
        let fd = open(dir + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StartError.other("cannot open \(dir)/lock: \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw StartError.locked(dir)
        }
        lockFD = fd  // held until the process exits
    }

    func installSignals(_ onStop: @escaping @Sendable () -> Void) {
        let once = NIOLockedValueBox(false)
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                if once.withLockedValue({ let was = $0; $0 = true; return was }) {
                    exit(130)  // a second signal: stop now
                }
                onStop()
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Every address a HOST:PORT names (DNS names resolved now), IPv4 and IPv6.
    static func resolve(_ hp: HostPort) -> [Endpoint] {
        if let e = Endpoint(hp.description) { return [e] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(hp.host, String(hp.port), &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var out: [Endpoint] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let sa = ai.pointee.ai_addr, let addr = SocketAddress(UnsafePointer(sa)), let e = Endpoint(addr) { out.append(e) }
            p = ai.pointee.ai_next
        }
        return out
    }

    /// What this node tells others to send to: the bound address, or for a wildcard listen,
    /// every up, non-loopback interface address (loopback if there is no other).
    static func advertised(listenHost: String, bound: SocketAddress) -> [Endpoint] {
        guard let port = bound.port.flatMap({ UInt16(exactly: $0) }) else { return [] }
        if listenHost != "0.0.0.0", listenHost != "::", let e = Endpoint(bound) { return [e] }
        var out: [Endpoint] = []
        if let interfaces = try? System.enumerateDevices() {
            for d in interfaces {
                guard let a = d.address, let e = Endpoint(a), !e.isLoopback, !e.isUnspecified else { continue }
                if case .v6(let hi, _) = e.address, hi >> 48 == 0xfe80 { continue }  // link-local needs a scope
                if listenHost == "0.0.0.0", case .v6 = e.address { continue }
                out.append(Endpoint(e.address, port: port))
            }
        }
        if out.isEmpty { out = [Endpoint(IPv4Address(127, 0, 0, 1), port: port)] }
        return Array(Set(out)).sorted().prefix(MemberRecord.endpointLimit).map { $0 }
    }
}
