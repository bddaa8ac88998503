import ArgumentParser
import Dispatch
import Foundation
import Logging
import MeshCore
import MeshCrypto
import MeshDaemon
import MeshTransport
import NIOConcurrencyHelpers

/// `meshwork demo`: a whole mesh in one process, on loopback, without root.
///
/// Nothing here is staged: each node is a real `Daemon` (the code `meshwork up` runs) with
/// its own identity, state directory, UDP socket and control socket; they join by gossip,
/// take addresses from the serverless pool, handshake and exchange acknowledged messages.
/// Only the TUN device is left out (it needs root).
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a small mesh on this machine and watch it work (no root needed).",
        discussion: """
            Creates a fresh mesh (a new secret and pool 100.64.0.0/24), starts N real nodes \
            in this process on 127.0.0.1 UDP ports, and shows them join by gossip, take \
            overlay addresses from the pool without any server, and handshake. Each node \
            then sends an encrypted message to the next one and waits for its \
            acknowledgement. A table of the nodes follows; the exit status is 0 only if \
            every node got an address and every message was acknowledged.

            Everything runs the same code as 'meshwork up' (without the TUN device) in a \
            temporary state directory that is removed at the end (--keep keeps it).

            Examples:
              meshwork demo
              meshwork demo --nodes 8 --json
            """
    )

    @Option(name: .long, help: ArgumentHelp("How many nodes to start (2 to 16).", valueName: "n"))
    var nodes = 5

    @Option(name: .long, help: ArgumentHelp("Give up if the mesh has not formed and delivered every message in this time.", valueName: "duration"))
    var timeout = "60s"

    @Flag(name: .long, help: "Keep the temporary state directories (their path is printed).")
    var keep = false

    @Flag(name: .long, help: "Print the result as JSON (no progress lines).")
    var json = false

    func validate() throws {
        guard (2...16).contains(nodes) else { throw ValidationError("--nodes: \(nodes) is out of range: use 2 to 16") }
        _ = try deadlineSeconds()
    }

    func deadlineSeconds() throws -> Double {
        do {
            let s = try DurationText.parseSeconds(timeout)
            guard s >= 1, s <= 3600 else { throw ValidationError("--timeout: '\(timeout)' is out of range: use 1s to 1h") }
            return Double(s)
        } catch let e as ValidationError { throw e } catch { throw ValidationError("--timeout: \(error)") }
    }

    /// One row of the result.
    struct NodeReport: Encodable {
        var name: String
        var nodeId: String
        var fingerprint: String
        var listen: String
        var address: String?
        var owned: [String]
        var sentTo: String
        var messagesSent: Int
        var messagesAcknowledged: Int
        var messagesReceived: Int
        var secondsToAddress: Double?
        var handshakeMilliseconds: Double?
        var acknowledgedMilliseconds: Double?
    }

    struct Report: Encodable {
        var ok: Bool
        var error: String?
        var mesh: String
        var meshId: String
        var pool: String
        var seconds: Double
        var nodes: [NodeReport]
    }

    /// A running node and what the demo has seen of it.
    final class Node: @unchecked Sendable {
        let name: String
        let node: EmbeddedNode
        let started: Date
        let id: NodeID
        let listen: String
        var joinedAt: Double?
        var addressAt: Double?
        var runner: NodeRunner { node.runner }
        init(name: String, node: EmbeddedNode, started: Date, id: NodeID, listen: String) {
            self.name = name
            self.node = node
            self.started = started
            self.id = id
            self.listen = listen
        }
    }

    func run() throws {
        let limit = try deadlineSeconds()
        let t0 = Date()
        let deadline = t0.addingTimeInterval(limit)
        let dir = NSTemporaryDirectory() + "meshwork-demo-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(atPath: dir) } }
        func say(_ line: String) { if !json { emit(line) } }
        func elapsed() -> String { String(format: "%5.2fs", Date().timeIntervalSince(t0)) }

        // A fresh mesh whose genesis (the first owner of the whole pool) is node 1.
        let names = (1...nodes).map { "demo-\($0)" }
        let (genesis, _) = try KeyStore.loadOrCreateIdentity(at: "\(dir)/\(names[0])/identity.key")
        var rng = SodiumRandom()
        let pool = try IPv4Prefix(parsing: "100.64.0.0/24")
        let token = try MeshToken(name: "demo", pool: pool, leaseSeconds: MeshToken.defaultLeaseSeconds,
                                  reclaimSeconds: MeshToken.defaultReclaimSeconds, secret: MeshSecret.generate(using: &rng),
                                  genesis: genesis.nodeID, bootstrap: [])
        try AtomicFile.write(Array((token.text + "\n").utf8), to: dir + "/demo.mesh", mode: 0o600, overwrite: false)
        say("Mesh 'demo' (ID \(token.meshID)): a new secret, pool \(pool), \(nodes) nodes on 127.0.0.1, state in \(dir)\(keep ? "" : " (removed at the end)")")

        var logger = Logger(label: "demo")
        logger.logLevel = .critical
        var running: [Node] = []
        var failure: String?
        defer {
            // Stop every node (each tells the others it is leaving), in parallel.
            for n in running { n.node.daemon.stop() }
            for n in running { _ = n.node.finished.wait(timeout: .now() + 10) }
        }

        func start(_ name: String, peers: [HostPort]) throws -> Node {
            let config = Daemon.Config(token: token, keyPath: nil, state: StatePaths(directory: "\(dir)/\(name)"), listenHost: "127.0.0.1",
                                       listenPort: 0, peers: peers, name: name)
            let started = Date()
            let node = try EmbeddedNode.start(config, logger: logger, timeout: deadline.timeIntervalSinceNow)
            guard let port = node.runner.localAddress?.port else { throw CLIError("\(name) did not start: no UDP port") }
            let id = try wait(node.runner.inspect { n, _ in n.gossip.me.node }, seconds: 10, what: name)
            return Node(name: name, node: node, started: started, id: id, listen: "127.0.0.1:\(port)")
        }

        do {
            let first = try start(names[0], peers: [])
            running.append(first)
            say("\(elapsed())  \(first.name) up on \(first.listen): node \(first.id.fingerprint), the genesis, owns the whole pool")
            let seed = try HostPort(parsing: first.listen)
            for name in names.dropFirst() {
                let n = try start(name, peers: [seed])
                running.append(n)
                say("\(elapsed())  \(n.name) up on \(n.listen): node \(n.id.fingerprint), joining through \(first.name)")
            }

            // Watch membership and the pool until every node sees all others and holds an address.
            while true {
                var pending = 0
                for n in running {
                    if let why = n.node.stoppedReason { throw CLIError("\(n.name) stopped: \(why)") }
                    let (alive, address) = try wait(n.runner.inspect { node, _ in
                        (node.gossip.members.values.filter { $0.status == .alive }.count, node.pool?.address)
                    }, seconds: max(1, deadline.timeIntervalSinceNow), what: n.name)
                    let now = Date().timeIntervalSince(n.started)
                    if n.joinedAt == nil, alive == nodes - 1 {
                        n.joinedAt = now
                        say("\(elapsed())  \(n.name) sees all \(nodes - 1) other members alive (gossip)")
                    }
                    if n.addressAt == nil, let address {
                        n.addressAt = now
                        say("\(elapsed())  \(n.name) holds \(IPv4Address(address)), \(String(format: "%.2f", now)) s after it started (pool)")
                    }
                    if n.joinedAt == nil || n.addressAt == nil { pending += 1 }
                }
                if pending == 0 { break }
                if Date() > deadline {
                    let missing = running.filter { $0.addressAt == nil }.map(\.name)
                    let unjoined = running.filter { $0.joinedAt == nil }.map(\.name)
                    throw CLIError("timed out after \(timeout): "
                        + (missing.isEmpty ? "" : "no address for \(missing.joined(separator: ", ")); ")
                        + (unjoined.isEmpty ? "" : "membership incomplete at \(unjoined.joined(separator: ", "))"))
                }
                Thread.sleep(forTimeInterval: 0.02)
            }

            // Each node sends one message to the next, over a fresh Noise session.
            let acked = NIOLockedValueBox<[Int: Double]>([:])
            let errors = NIOLockedValueBox<[Int: String]>([:])
            let group = DispatchGroup()
            for (i, n) in running.enumerated() {
                let to = running[(i + 1) % running.count]
                let text = "hello \(to.name), from \(n.name)"
                let sentAt = DispatchTime.now()
                group.enter()
                let remaining = max(1, deadline.timeIntervalSinceNow)
                n.runner.send(to: to.id, Array(text.utf8), timeout: .milliseconds(Int64(remaining * 1000))).whenComplete { result in
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - sentAt.uptimeNanoseconds) / 1e6
                    switch result {
                    case .success: acked.withLockedValue { $0[i] = ms }
                    case .failure(let e): errors.withLockedValue { $0[i] = "\(e)" }
                    }
                    group.leave()
                }
            }
            if group.wait(timeout: .now() + max(1, deadline.timeIntervalSinceNow) + 2) == .timedOut {
                let stopped = running.compactMap { n in n.node.stoppedReason.map { "\(n.name) stopped: \($0)" } }
                throw CLIError(stopped.first ?? "messages not acknowledged within \(timeout)")
            }
            for (i, n) in running.enumerated() {
                let to = running[(i + 1) % running.count]
                if let ms = acked.withLockedValue({ $0[i] }) {
                    say("\(elapsed())  \(n.name) → \(to.name): handshake, then message acknowledged in \(String(format: "%.1f", ms)) ms")
                } else {
                    let why = errors.withLockedValue { $0[i] } ?? "no answer"
                    failure = failure ?? "\(n.name) → \(to.name): \(why)"
                    say("\(elapsed())  \(n.name) → \(to.name): FAILED: \(why)")
                }
            }

            // The table: read each node's own view.
            var rows: [NodeReport] = []
            for (i, n) in running.enumerated() {
                let to = running[(i + 1) % running.count]
                let status = try ControlClient.request("status", stateDirectory: "\(dir)/\(n.name)")
                let s = try JSONDecoder().decode(ControlProtocol.Status.self, from: status)
                let handshake = try wait(n.runner.inspect { node, _ in node.sessions?.tunnel.lastRTT(of: to.id) }, seconds: 10, what: n.name)
                rows.append(NodeReport(
                    name: n.name, nodeId: s.nodeId, fingerprint: s.fingerprint, listen: n.listen, address: s.address, owned: s.ownedRanges ?? [],
                    sentTo: to.name, messagesSent: s.counters.messagesSent, messagesAcknowledged: s.counters.messagesAcknowledged,
                    messagesReceived: s.counters.messagesReceived, secondsToAddress: n.addressAt,
                    handshakeMilliseconds: handshake.map { $0.seconds * 1000 }, acknowledgedMilliseconds: acked.withLockedValue { $0[i] }))
            }
            let addresses = rows.compactMap(\.address)
            if failure == nil, Set(addresses).count != running.count {
                failure = "addresses are not distinct: \(addresses.joined(separator: ", "))"
            }
            if failure == nil, let r = rows.first(where: { $0.messagesReceived < 1 }) {
                failure = "\(r.name) received no message"
            }
            try finish(Report(ok: failure == nil, error: failure, mesh: token.name, meshId: token.meshID.description, pool: pool.description,
                              seconds: Date().timeIntervalSince(t0), nodes: rows))
        } catch {
            let message = (error as? CLIError)?.message ?? "\(error)"
            failure = message
            if json {
                try printJSON(Report(ok: false, error: message, mesh: token.name, meshId: token.meshID.description, pool: pool.description,
                                     seconds: Date().timeIntervalSince(t0), nodes: []))
            }
        }
        if let failure {
            if !json { printErr("Error: demo failed: \(failure)") }
            throw ExitCode(1)
        }
        say("Stopping the nodes (each tells the mesh it is leaving)...")
    }

    func finish(_ report: Report) throws {
        if json {
            try printJSON(report)
            return
        }
        emit("")
        let header = ["NAME", "NODE", "ADDRESS", "OWNS (free space)", "SENT", "ACKED", "RECEIVED", "ADDRESS IN", "HANDSHAKE"]
        let body = report.nodes.map { r in
            [r.name, r.fingerprint, r.address ?? "-", Self.summary(r.owned),
             "\(r.messagesSent)", "\(r.messagesAcknowledged)", "\(r.messagesReceived)",
             r.secondsToAddress.map { String(format: "%.2f s", $0) } ?? "-",
             r.handshakeMilliseconds.map { String(format: "%.2f ms", $0) } ?? "-"]
        }
        let widths = header.indices.map { c in ([header[c]] + body.map { $0[c] }).map(\.count).max()! }
        for row in [header] + body {
            let line = row.indices.map { c in row[c].padding(toLength: widths[c], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            emit(String(line.reversed().drop { $0 == " " }.reversed()))
        }
        emit("")
        if report.ok {
            emit("OK: \(report.nodes.count) nodes, \(report.nodes.count) distinct addresses, every message encrypted end to end and acknowledged, "
                + "no server (\(String(format: "%.1f", report.seconds)) s).")
            emit("Next: 'meshwork mesh create' and 'meshwork up' across real hosts (README.md, docs/operations.md).")
        }
    }

    /// The free space a node owns: its first range, and how much more (the JSON lists all).
    static func summary(_ ranges: [String]) -> String {
        guard let first = ranges.first else { return "-" }
        return ranges.count == 1 ? first : "\(first) +\(ranges.count - 1) more"
    }

    /// Straight to standard output, unbuffered, so progress shows as it happens.
    func emit(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
}
