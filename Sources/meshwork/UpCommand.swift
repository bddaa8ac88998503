import ArgumentParser
import Foundation
import Logging
import MeshCore
import MeshCrypto
import MeshDaemon

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node of a mesh in the foreground.",
        discussion: """
            Joins the mesh through --peer (and the token's bootstrap peers, and, after the \
            first run, the peers it knew last time), or waits to be joined, then gets an \
            overlay address from whichever members own free space in the pool (the same \
            address again after a restart; --address asks for a particular one). Membership \
            and allocation run over one UDP port, every packet sealed with a key derived from \
            the mesh secret.
            Stop it with Ctrl-C or SIGTERM: it tells the mesh it is leaving and keeps its \
            address for next time. 'meshwork leave' gives the address back for good.

            The state directory (--state, default \(StatePaths.defaultDirectory())) holds the \
            identity key (made on first start), node.json (incarnation and known peers), \
            pool.json (the node's grants and lease) and control.sock, through which \
            'meshwork status', 'peers', 'leases' and 'leave' talk to the node.

            As root, the node makes a TUN device (--tun, default meshwork0) with its overlay \
            address and the pool's prefix, so any program reaches any member by its overlay \
            address; the device goes when the node stops. Without root, pass --no-tun: \
            membership, addresses and messages (meshwork send) work without the device.

            Every flag can be set in a TOML file passed with --config instead, under the \
            flag's own name (peers = [...] for --peer); a flag on the command line wins. \
            'meshwork config check FILE' checks a file; deploy/meshwork.example.toml documents \
            every key. --metrics HOST:PORT serves Prometheus text at /metrics. Under systemd \
            (Type=notify) the node reports READY=1 once it listens.

            Examples:
              meshwork up --config /etc/meshwork/meshwork.toml
              meshwork up --mesh lab.mesh --listen 0.0.0.0:51830 --metrics 127.0.0.1:9477
              meshwork up --mesh lab.mesh --peer host1.example:51830 --name laptop
              meshwork up --mesh lab.mesh --state /tmp/n2 --listen 127.0.0.1:0 --peer 127.0.0.1:51830 --no-tun
            """
    )

    @Option(name: .long, help: ArgumentHelp("A TOML config file; its keys are named after these flags (see deploy/meshwork.example.toml). Flags override it.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The mesh token, or a file holding it (required here or in --config).", valueName: "token-or-file"))
    var mesh: String?

    @Option(name: .long, help: ArgumentHelp("Identity key (made if absent). Default: the state directory's identity.key.", valueName: "file"))
    var key: String?

    @Option(name: .long, help: ArgumentHelp("State directory. Default: $MESHWORK_STATE, else \(StatePaths.defaultDirectory()).", valueName: "dir"))
    var state: String?

    @Option(name: .long, help: ArgumentHelp("UDP address to listen on; port 0 picks a free port. Default: \(UpSettings.defaultListen).", valueName: "host:port"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("A member to join through (repeatable).", valueName: "host:port"))
    var peer: [String] = []

    @Option(name: .long, help: ArgumentHelp("This node's name in the mesh (default: the host name).", valueName: "name"))
    var name: String?

    @Option(name: .long, help: ArgumentHelp("Ask for this overlay address (it is given if its owner has it free).", valueName: "address"))
    var address: String?

    @Flag(name: .long, help: "Run without a TUN device (no root needed; no IP traffic over the overlay).")
    var noTun = false

    @Option(name: .long, help: ArgumentHelp("Name of the TUN device to make. Default: \(UpSettings.defaultTun).", valueName: "name"))
    var tun: String?

    @Option(name: .long, help: ArgumentHelp("MTU of the TUN device. Default: \(Daemon.defaultMTU) (a 1,500-byte underlay minus the overlay's overhead).", valueName: "bytes"))
    var mtu: Int?

    @Option(name: .long, help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error, critical. Default: \(UpSettings.defaultLogLevel).", valueName: "level"))
    var logLevel: String?

    @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://HOST:PORT/metrics (no authentication: keep it on 127.0.0.1 or a management network). Off by default.", valueName: "host:port"))
    var metrics: String?

    @Option(name: .long, help: ArgumentHelp("Grants this node's view of the pool holds before it (if it is the proposer) folds history into a checkpoint; 0: never. Default: 512.", valueName: "grants"))
    var checkpointEvery: Int?

    /// What the command line sets (nil where a flag is absent, so the file's value stands).
    var flags: UpSettings {
        var s = UpSettings()
        s.mesh = mesh
        s.key = key
        s.state = state
        s.listen = listen
        s.peers = peer.isEmpty ? nil : peer
        s.name = name
        s.address = address
        s.tun = tun
        s.noTun = noTun ? true : nil
        s.mtu = mtu
        s.logLevel = logLevel
        s.metrics = metrics
        s.checkpointEvery = checkpointEvery
        return s
    }

    func validate() throws {
        if let p = flags.problems().first {
            let flag = p.key == .peers ? "peer" : p.key.rawValue
            throw ValidationError("--\(flag): \(p.message)")
        }
    }

    /// The file (if any) overridden by the flags. A config file that is wrong is a usage
    /// error (exit 64: a supervisor should not retry it), named as `config check` names it.
    func settings() throws -> UpSettings {
        guard let config else { return flags }
        var s: UpSettings
        do {
            s = try UpSettings.load(path: config).overridden(by: flags)
        } catch {
            throw usageError("--config: \(error.description)")
        }
        // A device asked for on the command line wins over the file's `no-tun = true`.
        if flags.noTun == nil, flags.tun != nil || flags.mtu != nil { s.noTun = false }
        return s
    }

    /// A problem named where the setting came from: the flag, or the key and line in the file.
    func problem(_ key: UpSettings.Key, _ message: String) -> String {
        let setByFlag: Bool
        switch key {
        case .mesh: setByFlag = mesh != nil
        case .address: setByFlag = address != nil
        default: setByFlag = true
        }
        guard !setByFlag, let config else { return "--\(key.rawValue): \(message)" }
        return UpSettings.fileError(key, message, in: config).description
    }

    func usageError(_ message: String) -> ExitCode {
        printErr("Error: \(message)")
        return ExitCode(64)
    }

    func run() throws {
        let s = try settings()
        let level = Logger.Level(rawValue: s.logLevel ?? UpSettings.defaultLogLevel)!
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "meshwork")
        guard let mesh = s.mesh else {
            throw ValidationError("no mesh given: pass --mesh TOKEN-OR-FILE, or set 'mesh' in the --config file (make one with 'meshwork mesh create')")
        }
        let token: MeshToken
        do { token = try KeyStore.loadToken(mesh) } catch { throw CLIError(problem(.mesh, error.description)) }
        if let p = s.problems(with: token).first { throw usageError(problem(p.key, p.message)) }
        if !UpSettings.isToken(mesh), KeyStore.isReadableByOthers(mesh) {
            logger.warning("\(mesh) is readable by other users and holds the mesh secret; run 'chmod 600 \(mesh)'")
        }
        let (host, port) = UpSettings.parseListen(s.listen ?? UpSettings.defaultListen)!
        let peers = try (s.peers ?? []).map { try HostPort(parsing: $0) }
        var config = Daemon.Config(
            token: token, keyPath: s.key, state: StatePaths(directory: s.state), listenHost: host, listenPort: port, peers: peers,
            name: s.name ?? Self.hostName())
        if s.noTun != true {
            config.tunName = s.tun ?? UpSettings.defaultTun
            config.mtu = s.mtu ?? Daemon.defaultMTU
        }
        if let metrics = s.metrics, let (mh, mp) = UpSettings.parseListen(metrics) {
            config.metricsHost = mh
            config.metricsPort = mp
        }
        if let address = s.address { config.address = IPv4Address(address)!.value }
        config.checkpointEvery = s.checkpointEvery
        let status: Int32
        do {
            status = try Daemon(config: config, logger: logger).run()
        } catch let e as any CustomStringConvertible {
            throw CLIError(e.description)
        }
        throw ExitCode(status)
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        let raw = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let cleaned = String(String.UnicodeScalarView(raw.unicodeScalars.filter(Names.isNameCharacter).prefix(64)))
        return cleaned.isEmpty ? "node" : cleaned
    }
}

struct StateOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("State directory of the running node.", valueName: "dir"))
    var state: String?

    var directory: String { StatePaths(directory: state).directory }

    /// Asks the running node; with `json`, prints its answer as is and returns nil.
    func query<T: Decodable>(_ command: String, target: String? = nil, json: Bool, as type: T.Type) throws -> T? {
        let data: Data
        do { data = try ControlClient.request(command, target: target, stateDirectory: directory) } catch { throw CLIError("\(error)") }
        if json {
            FileHandle.standardOutput.write(data)
            return nil
        }
        return try JSONDecoder().decode(T.self, from: data)
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show this node: ID, name, mesh, overlay address, listen address, members by status, uptime.",
        discussion: """
            Asks the node running with the given state directory through its control socket.
            JSON fields: nodeId, fingerprint, name, meshId, meshName, listen, endpoints, incarnation, \
            members {alive, suspect, dead, left}, uptimeSeconds, awareness, counters {...}, address, \
            pool, poolPrefixLength, poolState, poolWaiting, poolFenced, reclaimSeconds, \
            poolDepartures [{nodeId, fingerprint, name, goneSeconds}], tun, mtu (absent with \
            --no-tun). docs/cli.md lists every counter.
            """
    )

    @OptionGroup var options: StateOption
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() throws {
        guard let s = try options.query("status", json: json, as: ControlProtocol.Status.self) else { return }
        let m = s.members
        let c = s.counters
        printFields([
            ("Node", "\(s.name) (\(s.fingerprint))"),
            ("Node ID", s.nodeId),
            ("Mesh", "\(s.meshName) (\(s.meshId))"),
            ("Listen", s.listen),
            ("Endpoints", s.endpoints.joined(separator: ", ")),
            ("Address", s.address.map { "\($0)/\(s.poolPrefixLength)" } ?? "none yet (\(s.poolWaiting ?? s.poolState))"),
            ("Device", s.tun.map { "\($0), MTU \(s.mtu ?? 0)" } ?? "none (--no-tun)"),
            ("Members", "\(m.alive) alive, \(m.suspect) suspect, \(m.dead) dead, \(m.left) left"),
            ("Granting", s.poolFenced
                ? "no: fenced or catching up (the live members do not hold most of the pool, or this node has not caught up with them since it started or woke: normal while joining)" : "yes"),
            ("Gone owners", s.poolDepartures.isEmpty ? "none" : s.poolDepartures.map {
                "\($0.name ?? $0.fingerprint) \(DurationText.format(seconds: UInt64($0.goneSeconds))) (reclaim after \(DurationText.format(seconds: UInt64(s.reclaimSeconds))))"
            }.joined(separator: ", ")),
            ("Incarnation", "\(s.incarnation)"),
            ("Uptime", DurationText.format(seconds: UInt64(s.uptimeSeconds))),
            ("Traffic", "\(s.counters.datagramsIn) in / \(s.counters.datagramsOut) out datagrams; dropped \(s.counters.dropsNotSealedForMesh) not sealed for this mesh, \(s.counters.dropsMalformed) malformed"),
            ("Sessions", "\(c.sessions) open; handshakes \(c.handshakesCompleted) done, \(c.handshakesFailed) failed"),
            ("Messages", "\(c.messagesSent) sent, \(c.messagesAcknowledged) acknowledged, \(c.messagesFailed) failed, \(c.messagesReceived) received"),
            ("Overlay", "\(c.overlayPacketsFromTun) packets from the device, \(c.overlayPacketsToTun) to it; dropped \(c.overlayDropsNoRoute) with no route, "
                + "\(c.overlayDropsSpoofed) spoofed, \(c.overlayDropsNotIPv4) not IPv4"),
            ("Data drops", "\(c.dropsBadMAC) bad MAC, \(c.dropsReplay) replayed, \(c.dropsUnknownIndex) unknown index, \(c.dropsNotMember) not a member, "
                + "\(c.dropsMalformedSession + c.dropsExpired + c.dropsStaged) other"),
        ])
    }
}

struct Peers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every known member: node, name, endpoints, status, incarnation, last heard.",
        discussion: """
            PATH is how overlay traffic to the peer goes: direct, or through a relaying member \
            (when the direct path does not answer; it moves back when it does), with the round \
            trip of the last handshake this node made with it.
            JSON: {"peers": [{nodeId, fingerprint, name, endpoints, status, incarnation, \
            lastHeardSecondsAgo, isSelf, path, relayFingerprint, relayName, session, \
            handshakeRTTMilliseconds}]}; status is alive, suspect, dead or left; path is direct \
            or relay, absent until a session was tried.
            """
    )

    @OptionGroup var options: StateOption
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() throws {
        guard let peers = try options.query("peers", json: json, as: ControlProtocol.Peers.self)?.peers else { return }
        let rows = [["NAME", "NODE", "STATUS", "INC", "LAST HEARD", "PATH", "RTT", "ENDPOINTS"]] + peers.map { p in
            let path: String
            switch p.path {
            case "relay"?: path = "relay via \(p.relayName ?? p.relayFingerprint ?? "?")"
            case let other?: path = other
            case nil: path = "-"
            }
            return [p.name + (p.isSelf ? " (self)" : ""), p.fingerprint, p.status, "\(p.incarnation)",
                    p.isSelf ? "-" : p.lastHeardSecondsAgo.map { String(format: "%.1fs ago", $0) } ?? "never",
                    path, p.handshakeRTTMilliseconds.map { String(format: "%.1f ms", $0) } ?? "-",
                    p.endpoints.joined(separator: ",")]
        }
        printTable(rows)
    }
}

struct Leases: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every lease in the mesh, and who owns the free space.",
        discussion: """
            As the running node's view of the pool has it: every leased address with its \
            holder, the node that granted it, and the holder's membership state; then the \
            stretches of free space and their owners.
            JSON: {"leases": [{address, holderId, holderFingerprint, holderName, grantorFingerprint, \
            state, isSelf}], "owners": [{range, size, ownerFingerprint, ownerName}]}.
            """
    )

    @OptionGroup var options: StateOption
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() throws {
        guard let l = try options.query("leases", json: json, as: ControlProtocol.Leases.self) else { return }
        let rows = [["ADDRESS", "HOLDER", "NODE", "GRANTED BY", "STATE"]] + l.leases.map {
            [$0.address, ($0.holderName ?? "?") + ($0.isSelf ? " (self)" : ""), $0.holderFingerprint, $0.grantorFingerprint, $0.state]
        }
        printTable(rows)
        print("")
        let free = [["FREE RANGE", "SIZE", "OWNER", "NODE"]] + l.owners.map { [$0.range, "\($0.size)", $0.ownerName ?? "?", $0.ownerFingerprint] }
        printTable(free)
    }
}

/// Columns padded to their widest cell; the last column is not padded.
func printTable(_ rows: [[String]]) {
    guard let n = rows.first?.count else { return }
    let widths = (0..<n).map { c in rows.map { $0[c].count }.max() ?? 0 }
    for r in rows {
        print(r.enumerated().map { c, v in c == n - 1 ? v : v.padding(toLength: widths[c], withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}

struct Leave: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Leave the mesh for good: release this node's address and space, then stop the node.",
        discussion: """
            The running node (--state) stops using its address and tells every member it is \
            leaving, and asks every member what it holds; a second later, once it has all it \
            was given (6 s at most; once caught up, if it joined a moment ago), it gives its \
            address and every range of the pool it owns to members that answered and own the \
            neighbouring ranges, gives on for a second more what still comes to it, and exits. \
            To stop a node that will come back with the same address, send it SIGTERM (Ctrl-C) \
            instead.
            """
    )

    @OptionGroup var options: StateOption
    @Flag(name: .long, help: "Print JSON: {\"left\": true, \"released\": address, absent if none}.") var json = false

    struct Reply: Decodable { let left: Bool; let released: String? }

    func run() throws {
        guard let r = try options.query("leave", json: json, as: Reply.self) else { return }
        print(r.released.map { "Released \($0) and left the mesh." } ?? "Left the mesh (this node held no address).")
    }
}
