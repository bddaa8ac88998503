import Foundation
import Logging
import MeshCore
import MeshCrypto
import MeshDaemon
import MeshNode
import MeshTransport
import Testing

/// The Swift API of a node: `send(to:bytes:)` and the `messages` sequence, with two nodes
/// embedded in this process on real UDP sockets.
@Suite struct SwiftAPITests {
    final class Embedded: @unchecked Sendable {
        let daemon: Daemon
        let ready = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        var runner: NodeRunner?

        init(token: MeshToken, state: String, name: String, peers: [HostPort]) {
            var logger = Logger(label: name)
            logger.logLevel = .error
            var config = Daemon.Config(token: token, keyPath: nil, state: StatePaths(directory: state), listenHost: "127.0.0.1", listenPort: 0,
                                       peers: peers, name: name)
            config.handleSignals = false
            config.streamMessages = true
            daemon = Daemon(config: config, logger: logger)
            daemon.onReady = { [self] r in
                runner = r
                ready.signal()
            }
            Thread { [self] in
                _ = try? daemon.run()
                finished.signal()
            }.start()
        }

        func stop() {
            daemon.stop()
            _ = finished.wait(timeout: .now() + 10)
        }
    }

    @Test func sendAndReceiveThroughTheSwiftAPI() async throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let token = try Self.makeMesh(cli, name: "api", pool: "100.92.0.0/24")
        let (a, ra) = try await Self.start(token, cli, name: "a")
        defer { a.stop() }
        let (b, rb) = try await Self.start(token, cli, name: "b", joining: ra)
        defer { b.stop() }
        let bID = try await rb.inspect { node, _ in node.id }.get()
        let aID = try await ra.inspect { node, _ in node.id }.get()
        // Wait until a knows b as a live member.
        let deadline = Date().addingTimeInterval(20)
        while try await !ra.inspect({ node, _ in node.gossip.member(bID)?.status == .alive }).get(), Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }

        let received = Task { () -> [(NodeID, String)] in
            var got: [(NodeID, String)] = []
            for await m in rb.messages {
                got.append((m.from, String(decoding: m.bytes, as: UTF8.self)))
                if got.count == 3 { break }
            }
            return got
        }
        for text in ["one", "two", "three"] {
            try await ra.send(to: bID, bytes: Array(text.utf8), timeout: .seconds(10))
        }
        let got = await received.value
        #expect(got.map(\.1) == ["one", "two", "three"])
        #expect(got.allSatisfy { $0.0 == aID })

        // A node that is not a member: the send fails at once, saying so.
        let stranger = NodeID(Bytes32([UInt8](repeating: 7, count: 32))!)
        await #expect(throws: SendFailure.notAMember) {
            try await ra.send(to: stranger, bytes: [1], timeout: .seconds(1))
        }
    }

    /// Pool state is made durable off the event loop: while a write is under way the node
    /// goes on answering, and the ACK that depends on the write waits for it.
    @Test func poolWritesRunOffTheEventLoopAndHoldTheAck() async throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let token = try Self.makeMesh(cli, name: "slowdisk", pool: "100.93.0.0/24")
        let (a, ra) = try await Self.start(token, cli, name: "a")
        defer { a.stop() }
        let bound: @Sendable (MeshNode, Instant) -> Bool = { node, _ in
            if case .bound? = node.pool?.phase { return true } else { return false }
        }
        try await waitUntil("a bound") { try await ra.inspect(bound).get() }

        // From now on every write of a's blocks until the test lets it go.
        let gate = PersistGate()
        try await ra.loop.submit {
            let write = ra.onPersist
            ra.onPersist = { grants, seq, votes, checkpoint in
                gate.enter()
                try write?(grants, seq, votes, checkpoint)
            }
        }.get()
        let (b, rb) = try await Self.start(token, cli, name: "b", joining: ra)
        defer { b.stop() }

        // a signs b's lease: its write starts and blocks.
        #expect(await Self.signalled(gate.entered, within: 20))
        // The event loop still answers while the write is blocked (read on the loop, so a
        // test task that runs late under load cannot blur it)...
        let duringWrite = try await ra.inspect { _, _ in !gate.anyLeft }.get()
        #expect(duringWrite, "a's event loop answered only once the write was let go")
        // ...and b has no ACK: it cannot be bound before a's write is done (the gate lets a
        // write go by itself after 120 s, so that a broken build fails instead of hanging).
        try await Task.sleep(for: .milliseconds(500))
        let (bBound, released) = try await rb.inspect { node, now in (bound(node, now), gate.anyLeft) }.get()
        #expect(!bBound || released, "b bound while a's write was still under way")

        gate.open()
        // Within b's longest backoff and more: while a's write was blocked, b's DISCOVERs
        // went unanswered and it backed off (`backoffMax`, 30 s); under load in CI it once
        // needed more than the 20 s this waited before.
        try await waitUntil("b bound once a's write is done", within: 45, detail: {
            try await rb.inspect { node, _ in
                "b: \(String(describing: node.pool?.phase)), \(node.pool?.waitingReason ?? "no reason"), knows \(node.pool?.members.count ?? 0) members"
            }.get()
        }) { try await rb.inspect(bound).get() }
    }

    /// Blocks `onPersist` calls until `open()`.
    final class PersistGate: @unchecked Sendable {
        let entered = DispatchSemaphore(value: 0)
        private let released = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var opened = false
        private var left = false
        var isOpen: Bool { lock.withLock { opened } }
        /// Whether a blocked write has returned.
        var anyLeft: Bool { lock.withLock { left } }

        func enter() {
            guard !isOpen else { return }
            entered.signal()
            _ = released.wait(timeout: .now() + 120)
            lock.withLock { left = true }
        }

        func open() {
            lock.withLock { opened = true }
            for _ in 0..<64 { released.signal() }
        }
    }

    /// A mesh whose genesis key is `a`'s (STATE a/identity.key), made by the CLI.
    static func makeMesh(_ cli: CLI, name: String, pool: String) throws -> MeshToken {
        let made = try cli.run(["mesh", "create", "--name", name, "--pool", pool, "--key", cli.path("a/identity.key"), "--out", cli.path("\(name).mesh")])
        #expect(made.status == 0)
        return try KeyStore.loadToken(cli.path("\(name).mesh"))
    }

    /// Starts node `name` in this process (joining `seed`'s node, if given) and waits until
    /// it is up; the caller stops it.
    static func start(_ token: MeshToken, _ cli: CLI, name: String, joining seed: NodeRunner? = nil) async throws -> (Embedded, NodeRunner) {
        let peers = try seed.map { [try HostPort(parsing: "127.0.0.1:\(try #require($0.localAddress?.port))")] } ?? []
        let node = Embedded(token: token, state: cli.path(name), name: name, peers: peers)
        guard await signalled(node.ready, within: 20), let runner = node.runner else {
            node.stop()
            throw StartFailure(name: name)
        }
        return (node, runner)
    }

    struct StartFailure: Error { let name: String }

    /// Waits for `semaphore` without blocking a thread of the test pool (other tests run
    /// on it meanwhile).
    static func signalled(_ semaphore: DispatchSemaphore, within seconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while semaphore.wait(timeout: .now()) != .success {
            guard Date() < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    func waitUntil(_ what: String, within seconds: Double = 20, detail: (() async throws -> String)? = nil,
                   _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try await !condition() {
            guard Date() < deadline else {
                let more = try await detail?() ?? ""
                Issue.record("timed out waiting: \(what)\(more.isEmpty ? "" : "; \(more)")")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
