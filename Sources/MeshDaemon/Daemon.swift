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
            // Releasing, the pool gives its space away a second in (later if it is still
            // catching up), then gives on what comes for the linger.
            let wait = PoolAgent.Settings().releaseWaitMax
            self.runner.leave(linger: .seconds(1), release: release, releaseWaitMax: .nanoseconds(wait.nanoseconds)).whenComplete { _ in done.succeed(0) }
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
