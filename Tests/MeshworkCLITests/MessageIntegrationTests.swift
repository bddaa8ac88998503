import Foundation
import Testing

/// `meshwork send` and `listen` between real processes on 127.0.0.1.
@Suite(.serialized) struct MessageIntegrationTests {
    typealias Daemon = MembershipIntegrationTests.Daemon

    func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        try CLI.eventually(seconds, every: 0.1, condition)
    }

    func status(_ cli: CLI, _ d: Daemon) -> [String: Any]? {
        guard let r = try? cli.run(["status", "--state", d.state, "--json"]), r.status == 0 else { return nil }
        return try? cli.json(r.stdout)
    }

    /// Two nodes that know each other and hold addresses.
    func startPair(_ cli: CLI) throws -> (Daemon, Daemon) {
        let create = try cli.run(["mesh", "create", "--name", "msgtest", "--pool", "100.91.0.0/24", "--key", cli.path("state-a/identity.key"),
                                  "--out", cli.path("m.mesh")])
        #expect(create.status == 0, "\(create.stderr)")
        let a = try Daemon(cli: cli, name: "a", mesh: cli.path("m.mesh"), peers: [])
        var listen = ""
        #expect(eventually(10) {
            guard let l = status(cli, a)?["listen"] as? String else { return false }
            listen = l
            return true
        })
        let b = try Daemon(cli: cli, name: "b", mesh: cli.path("m.mesh"), peers: [listen])
        for d in [a, b] {
            #expect(eventually(20) {
                guard let s = status(cli, d), s["address"] is String, let m = s["members"] as? [String: Int] else { return false }
                return m["alive"] == 2
            }, "\(d.name) did not settle: \(d.logText)")
        }
        return (a, b)
    }

    /// A child process whose output is collected as it comes.
    final class Background {
        let process = Process()
        let out = Pipe(), err = Pipe()
        init(_ executable: URL, _ args: [String]) throws {
            process.executableURL = executable
            process.arguments = args
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        /// Waits for exit (up to `seconds`), then returns what it printed.
        func finish(within seconds: Double) -> (exited: Bool, stdout: String, stderr: String) {
            let exited = CLI.eventually(seconds, every: 0.05) { !process.isRunning }
            // SIGKILL: children of the test runner inherit its blocked SIGINT and SIGTERM.
            if !exited { kill(process.processIdentifier, SIGKILL) }
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (exited, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
    }

    static let tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test func sendReachesAListenerEncryptedAndAcknowledged() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        let (a, b) = try startPair(cli)
        daemons = [a, b]
        let sa = try #require(status(cli, a)), sb = try #require(status(cli, b))
        let secret = "meshwork-secret-\(UUID().uuidString)"

        // Capture loopback while the message goes, when tcpdump can run here.
        var capture: Background?
        let pcap = cli.path("lo.pcap")
        if let tcpdump = Self.tcpdump, getuid() == 0 {
            let ports = [sa, sb].compactMap { ($0["listen"] as? String)?.split(separator: ":").last }.map { "udp port \($0)" }
            let c = try Background(URL(fileURLWithPath: tcpdump), ["-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0", "-w", pcap] + [ports.joined(separator: " or ")])
            capture = c
            // Capturing for sure once gossip between the two shows up in the file.
            func size() -> Int { ((try? FileManager.default.attributesOfItem(atPath: pcap))?[.size] as? NSNumber)?.intValue ?? 0 }
            #expect(eventually(15) { size() > 24 }, "tcpdump captured nothing")
        }

        let listener = try Background(CLI.executable, ["listen", "--state", b.state, "--json", "--count", "2"])
        let sent = try cli.run(["send", "b", secret, "--state", a.state])
        #expect(sent.status == 0, "send failed: \(sent.stderr)")
        #expect(sent.stdout.contains("Delivered \(secret.utf8.count) bytes to b"))

        // By overlay address, with JSON.
        let address = try #require(sb["address"] as? String)
        let second = try cli.run(["send", address, "second", "--state", a.state, "--json"])
        #expect(second.status == 0, "\(second.stderr)")
        let ack = try cli.json(second.stdout)
        #expect(ack["fingerprint"] as? String == sb["fingerprint"] as? String)

        let heard = listener.finish(within: 10)
        #expect(heard.exited, "listen did not get two messages: \(heard.stderr)")
        let lines = heard.stdout.split(separator: "\n").compactMap { try? cli.json(String($0)) }
        #expect(lines.map { $0["text"] as? String } == [secret, "second"])
        #expect(lines.first?["fingerprint"] as? String == sa["fingerprint"] as? String)
        #expect(lines.first?["address"] as? String == sa["address"] as? String)
        #expect(lines.first?["name"] as? String == "a")

        if let capture {
            // Let the last datagrams reach the file, then stop.
            // (-U writes each packet as it comes: stopping it with SIGKILL loses none.)
            Thread.sleep(forTimeInterval: 0.3)
            _ = capture.finish(within: 0)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: pcap))
            // The capture holds the exchange (the handshake, data and acknowledgements) ...
            #expect(bytes.count > 24 + 6 * 60, "capture too small to hold the exchange: \(bytes.count) bytes")
            // ... and not the text.
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "the message text is in the clear on the wire")
            #expect(bytes.range(of: Data("second".utf8)) == nil)
        } else {
            print("note: packet capture skipped (needs root and tcpdump)")
        }

        let after = try #require(status(cli, b)?["counters"] as? [String: Any])
        #expect(after["messagesReceived"] as? Int == 2)
        #expect(after["handshakesCompleted"] as? Int == 1)
        #expect(after["sessions"] as? Int == 1)
    }

    /// A `listen` client that stops reading is disconnected once 32 MiB wait for it; the
    /// node is not held hostage (nor its memory).
    @Test func aListenerThatStopsReadingIsCutOff() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer {
            close(fd)
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        let (a, b) = try startPair(cli)
        daemons = [a, b]
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array((b.state + "/control.sock").utf8) + [0]) }
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(connected == 0)
        let request = Array("{\"command\":\"listen\"}\n".utf8)
        #expect(request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == request.count)

        // 40 messages of 1 MiB: about 53 MiB of JSON lines for a client that reads nothing.
        try Data(repeating: 0x41, count: 1 << 20).write(to: URL(fileURLWithPath: cli.path("big")))
        for round in 0..<5 {  // eight senders at a time
            let senders = try (0..<8).map { _ in try Background(CLI.executable, ["send", "--state", a.state, "b", "--file", cli.path("big"), "--timeout", "30s"]) }
            for s in senders {
                let r = s.finish(within: 60)
                #expect(r.exited && s.process.terminationStatus == 0, "round \(round): \(r.stderr)")
            }
        }
        // Now read: what was queued before the cut, then the end of the stream.
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var total = 0, sawEnd = false
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n == 0 { sawEnd = true; break }
            if n < 0 { break }
            total += n
        }
        #expect(sawEnd, "the node kept the silent listener connected (\(total) bytes read)")
        #expect(total < 40 * (1 << 20), "every message reached a client that was cut off?")
        #expect(status(cli, b) != nil, "the node stopped answering")
    }

    @Test func sendFailsClearlyWhenItCannotBeDelivered() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        let (a, b) = try startPair(cli)
        daemons = [a, b]

        // The overlay-level ping, without TUN: direct, with round trips.
        let ping = try cli.run(["ping", "b", "--count", "2", "--state", a.state])
        #expect(ping.status == 0, "\(ping.stderr)")
        #expect(ping.stdout.contains("reply from b ("), "\(ping.stdout)")
        #expect(ping.stdout.contains("direct"))
        #expect(ping.stdout.contains("2 of 2 replied"))
        let pingJSON = try cli.run(["ping", "b", "--count", "1", "--json", "--state", a.state])
        #expect((try cli.json(pingJSON.stdout))["path"] as? String == "direct")

        let unknown = try cli.run(["send", "nobody", "hi", "--state", a.state])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("unknown peer"), "\(unknown.stderr)")

        let big = cli.path("big")
        _ = FileManager.default.createFile(atPath: big, contents: Data(count: (1 << 20) + 1))
        let tooLarge = try cli.run(["send", "b", "--file", big, "--state", a.state])
        #expect(tooLarge.status == 1)
        #expect(tooLarge.stderr.contains("message too large: 1048577 bytes; the limit is 1048576 bytes"), "\(tooLarge.stderr)")

        let usage = try cli.run(["send", "b", "--state", a.state])
        #expect(usage.status == 64)
        #expect(usage.stderr.contains("nothing to send"))

        // Exactly 1 MiB goes through.
        let mib = cli.path("mib")
        _ = FileManager.default.createFile(atPath: mib, contents: Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }))
        let whole = try cli.run(["send", "b", "--file", mib, "--state", a.state, "--timeout", "30s"])
        #expect(whole.status == 0, "\(whole.stderr)")

        // A stopped peer: the send fails within its timeout, saying why.
        b.kill(SIGKILL)
        b.process.waitUntilExit()
        let start = Date()
        let stopped = try cli.run(["send", "b", "are you there?", "--state", a.state, "--timeout", "2s"])
        let took = Date().timeIntervalSince(start)
        #expect(stopped.status == 1)
        #expect(stopped.stderr.contains("timed out after 2s: b ("), "\(stopped.stderr)")
        #expect(took >= 1.9 && took < 8, "took \(took)s")
        let lost = try cli.run(["ping", "b", "--count", "1", "--timeout", "1s", "--state", a.state])
        #expect(lost.status == 1)
        #expect(lost.stderr.contains("no replies from b"), "\(lost.stderr)")
        let counters = try #require(status(cli, a)?["counters"] as? [String: Any])
        #expect(counters["messagesFailed"] as? Int == 1)
        #expect(counters["messagesAcknowledged"] as? Int == 1)
    }
}

@Suite struct BenchCommandTests {
    @Test func benchMessagesMeasuresBothPathsInOneRun() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["bench", "messages", "--count", "300", "--size", "200", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try cli.json(r.stdout)
        let rows = try #require(j["results"] as? [[String: Any]])
        #expect(rows.count == 2)
        #expect((rows[0]["delivered"] as? Int ?? 0) > 0, "plain UDP delivered nothing")
        #expect(rows[1]["delivered"] as? Int == 300, "every Meshwork message is acknowledged")
        #expect((rows[1]["messagesPerSecond"] as? Double ?? 0) > 0)
    }
}
