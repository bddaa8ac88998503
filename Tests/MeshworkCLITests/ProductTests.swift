import Foundation
import MeshCore
import MeshDaemon
import MeshPool
import MeshTransport
import NIOCore
import Testing

/// The config file as `up --config` and `config check` read it (no processes).
@Suite struct UpSettingsTests {
    func parse(_ text: String) throws(UpSettings.FileError) -> UpSettings { try UpSettings.parse(text, file: "t.toml") }

    func error(_ text: String) -> String? {
        do { _ = try parse(text); return nil } catch { return error.description }
    }

    @Test func everyKeyIsRead() throws {
        let s = try parse("""
            mesh = "lab.mesh"
            key = "id.key"
            state = "st"
            listen = "127.0.0.1:0"
            peers = ["a.example:51830", "192.0.2.1:1"]
            name = "web-1"
            address = "100.80.0.10"
            tun = "mw1"
            no-tun = false
            mtu = 1400
            log-level = "debug"
            metrics = "127.0.0.1:9477"
            """)
        #expect(s.mesh == "lab.mesh" && s.key == "id.key" && s.state == "st" && s.listen == "127.0.0.1:0")
        #expect(s.peers == ["a.example:51830", "192.0.2.1:1"] && s.name == "web-1" && s.address == "100.80.0.10")
        #expect(s.tun == "mw1" && s.noTun == false && s.mtu == 1400 && s.logLevel == "debug" && s.metrics == "127.0.0.1:9477")
        // Every key of the file is a flag of `up`: none is left unread.
        #expect(UpSettings.Key.allCases.count == 13)
    }

    @Test func flagsOverrideTheFile() throws {
        let file = try parse("name = \"from-file\"\nmtu = 1400\npeers = [\"a:1\"]\n")
        var flags = UpSettings()
        flags.name = "from-flag"
        let s = file.overridden(by: flags)
        #expect(s.name == "from-flag" && s.mtu == 1400 && s.peers == ["a:1"])
    }

    @Test func errorsNameTheKeyTheLineAndTheFix() {
        let cases: [(String, String)] = [
            ("mtu = 70000", "t.toml:1: mtu: 70000 is out of range: use 576 to 65535 (1420 suits a 1500-byte underlay)"),
            ("\n\nmtu = \"1420\"", "t.toml:3: mtu: must be an integer, not the string \"1420\""),
            ("peer = [\"a:1\"]",
             "t.toml:1: peer: unknown key (did you mean 'peers'?); the keys are: mesh, key, state, listen, peers, name, address, tun, no-tun, mtu, log-level, metrics, checkpoint-every"),
            ("log_level = \"info\"",
             "t.toml:1: log_level: unknown key (did you mean 'log-level'?); the keys are: mesh, key, state, listen, peers, name, address, tun, no-tun, mtu, log-level, metrics, checkpoint-every"),
            ("peers = \"a:1\"", "t.toml:1: peers: must be an array of strings, not the string \"a:1\""),
            ("peers = [\"a\"]", "t.toml:1: peers: 'a' has no port: write HOST:PORT, e.g. 192.0.2.1:51830 or [2001:db8::1]:51830"),
            ("no-tun = 1", "t.toml:1: no-tun: must be true or false, not the integer 1"),
            ("listen = \"example.com:1\"", "t.toml:1: listen: 'example.com:1' must be an IP address and a port from 0 to 65535, e.g. 0.0.0.0:51830 or [::]:51830"),
            ("address = \"100.80.0\"", "t.toml:1: address: '100.80.0' is not an IPv4 address: write four decimal octets, e.g. 100.80.0.10"),
            ("log-level = \"loud\"", "t.toml:1: log-level: 'loud' is not a level: use trace, debug, info, notice, warning, error or critical"),
            ("name = \"a b\"", "t.toml:1: name: 'a b' is invalid: use 1-64 characters from A-Z a-z 0-9 . _ -"),
            ("tun = \"a-very-long-device-name\"", "t.toml:1: tun: 'a-very-long-device-name' is not a valid interface name: use 1-15 characters from A-Z a-z 0-9 . _ -"),
            ("metrics = \"9477\"",
             "t.toml:1: metrics: '9477' must be an IP address and a port, e.g. 127.0.0.1:9477 (the endpoint has no authentication: keep it off public addresses)"),
            ("mesh = \"\"", "t.toml:1: mesh: is empty: give a mesh token, or the path of a file holding one"),
            ("mtu = = 3", "t.toml:1: not valid TOML: Error while parsing value: could not determine value type"),
            ("# quoted\n'mtu' = 70000", "t.toml:2: mtu: 70000 is out of range: use 576 to 65535 (1420 suits a 1500-byte underlay)"),
            ("mtu.x = 1", "t.toml:1: mtu: must be an integer, not a table"),
            ("checkpoint-every = 5", "t.toml:1: checkpoint-every: 5 is out of range: use 0 (never compact) or 32 to 1048576 grants (default 512)"),
            ("checkpoint-every = \"512\"", "t.toml:1: checkpoint-every: must be an integer, not the string \"512\""),
            ("no-tun = true\ntun = \"mw1\"", "t.toml:1: no-tun: is set, and so is tun: a node without a device has no device name or MTU; remove one of them"),
        ]
        for (text, expected) in cases {
            #expect(error(text) == expected, "for: \(text)")
        }
    }

    @Test func pathsInAFileAreRelativeToItsFolder() throws {
        let dir = NSTemporaryDirectory() + "meshwork-settings-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "mesh = \"lab.mesh\"\nstate = \"/abs/state\"\nkey = \"k/id.key\"\n".write(toFile: dir + "/m.toml", atomically: true, encoding: .utf8)
        let s = try UpSettings.load(path: dir + "/m.toml")
        #expect(s.mesh == dir + "/lab.mesh" && s.state == "/abs/state" && s.key == dir + "/k/id.key")
    }
}

/// `meshwork config check`, `up --config`, `demo`, the metrics endpoint and systemd readiness,
/// through the real executable.
@Suite(.serialized) struct ProductCLITests {
    typealias Daemon = MembershipIntegrationTests.Daemon

    static var repoRoot: String {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while dir.path != "/", !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.path
    }

    func status(_ cli: CLI, _ state: String) -> [String: Any]? {
        guard let r = try? cli.run(["status", "--state", state, "--json"]), r.status == 0 else { return nil }
        return try? cli.json(r.stdout)
    }

    @Test func configCheckAcceptsTheDocumentedExample() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        // The example as shipped, with its token path pointed at the published test token.
        let example = try String(contentsOfFile: Self.repoRoot + "/deploy/meshwork.example.toml", encoding: .utf8)
        #expect(example.contains("mesh = \"/etc/meshwork/lab.mesh\""))
        try example.replacingOccurrences(of: "/etc/meshwork/lab.mesh", with: Self.repoRoot + "/Keys/TEST-ONLY-lab.mesh")
            .write(toFile: cli.path("example.toml"), atomically: true, encoding: .utf8)
        let r = try cli.run(["config", "check", cli.path("example.toml")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("\(cli.path("example.toml")): ok\n"))
        #expect(r.stdout.contains("listen:           0.0.0.0:51830\n") && r.stdout.contains("mtu:              1420\n") && r.stdout.contains("metrics:          off (default)"))

        // Every key the code knows is documented in the example, set or commented out.
        for key in UpSettings.Key.allCases {
            #expect(example.contains("\n\(key.rawValue) = ") || example.contains("\n# \(key.rawValue) = "), "\(key.rawValue) is not in the example")
        }

        let j = try cli.run(["config", "check", cli.path("example.toml"), "--json"])
        #expect(j.status == 0)
        let o = try cli.json(j.stdout)
        #expect(o["ok"] as? Bool == true)
        #expect((o["settings"] as? [String: String])?["tun"] == "meshwork0")
    }

    /// The config shipped in the Kubernetes ConfigMap is one `up` accepts.
    @Test func theKubernetesConfigMapHoldsAValidConfig() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let yaml = try String(contentsOfFile: Self.repoRoot + "/deploy/kubernetes/configmap.yaml", encoding: .utf8)
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "meshwork.toml: |" }) else {
            Issue.record("no meshwork.toml in configmap.yaml")
            return
        }
        let body = lines[(start + 1)...].prefix { $0.isEmpty || $0.hasPrefix("    ") }.map { $0.dropFirst(min(4, $0.count)) }.joined(separator: "\n")
        #expect(body.contains("mesh = \"/etc/meshwork/secret/mesh.token\""))
        try body.replacingOccurrences(of: "/etc/meshwork/secret/mesh.token", with: Self.repoRoot + "/Keys/TEST-ONLY-lab.mesh")
            .write(toFile: cli.path("k8s.toml"), atomically: true, encoding: .utf8)
        let r = try cli.run(["config", "check", cli.path("k8s.toml")])
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func configCheckNamesTheBadKeyAndValue() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        try "# a node\nmesh = \"\(Self.repoRoot)/Keys/TEST-ONLY-lab.mesh\"\nmtu = 70000\n".write(toFile: cli.path("bad.toml"), atomically: true, encoding: .utf8)
        let r = try cli.run(["config", "check", cli.path("bad.toml")])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr == "Error: \(cli.path("bad.toml")):3: mtu: 70000 is out of range: use 576 to 65535 (1420 suits a 1500-byte underlay)\n")

        let j = try cli.run(["config", "check", cli.path("bad.toml"), "--json"])
        #expect(j.status == 1)
        let o = try cli.json(j.stdout)
        #expect(o["ok"] as? Bool == false && o["key"] as? String == "mtu" && o["line"] as? Int == 3)

        // A token path that leads nowhere is an error found now, not at start-up.
        try "mesh = \"missing.mesh\"\n".write(toFile: cli.path("nomesh.toml"), atomically: true, encoding: .utf8)
        let m = try cli.run(["config", "check", cli.path("nomesh.toml")])
        #expect(m.status == 1)
        #expect(m.stderr == "Error: \(cli.path("nomesh.toml")):1: mesh: '\(cli.path("missing.mesh"))' is neither a file nor a mesh token (a token starts with 'mwmesh1.'); check the path, or make a token with 'meshwork mesh create'\n")

        // The address must be in the token's pool: known only with the token in hand.
        try "mesh = \"\(Self.repoRoot)/Keys/TEST-ONLY-lab.mesh\"\naddress = \"10.0.0.5\"\n".write(toFile: cli.path("addr.toml"), atomically: true, encoding: .utf8)
        let pool = try cli.json(try cli.run(["mesh", "inspect", Self.repoRoot + "/Keys/TEST-ONLY-lab.mesh", "--json"]).stdout)["pool"] as? String ?? "?"
        let addr = try cli.run(["config", "check", cli.path("addr.toml")])
        #expect(addr.status == 1)
        #expect(addr.stderr == "Error: \(cli.path("addr.toml")):2: address: 10.0.0.5 is not a usable address of the mesh pool \(pool)\n")
        let upAddr = try cli.run(["up", "--config", cli.path("addr.toml"), "--no-tun", "--state", cli.path("st")])
        #expect(upAddr.status == 64 && upAddr.stderr == "Error: \(cli.path("addr.toml")):2: address: 10.0.0.5 is not a usable address of the mesh pool \(pool)\n")
        #expect(!cli.exists("st"))

        let none = try cli.run(["config", "check", cli.path("absent.toml")])
        #expect(none.status == 1 && none.stderr == "Error: \(cli.path("absent.toml")): no such file\n")

        // `up` refuses the same file with the same words, and starts nothing.
        let up = try cli.run(["up", "--config", cli.path("bad.toml"), "--state", cli.path("st")])
        #expect(up.status == 64)
        #expect(up.stderr.contains("--config: \(cli.path("bad.toml")):3: mtu: 70000 is out of range"))
        #expect(!cli.exists("st"))
        let noMesh = try cli.run(["up", "--no-tun", "--state", cli.path("st")])
        #expect(noMesh.status == 64 && noMesh.stderr.contains("no mesh given: pass --mesh TOKEN-OR-FILE, or set 'mesh' in the --config file"))
    }

    @Test func upReadsTheFileAndFlagsWin() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let create = try cli.run(["mesh", "create", "--name", "cfgtest", "--pool", "100.93.0.0/24", "--key", cli.path("node/identity.key"),
                                  "--out", cli.path("c.mesh")])
        #expect(create.status == 0, "\(create.stderr)")
        // Relative paths: from the file's folder.
        try """
            mesh = "c.mesh"
            state = "node"
            listen = "127.0.0.1:0"
            name = "from-file"
            no-tun = true
            log-level = "warning"
            """.write(toFile: cli.path("node.toml"), atomically: true, encoding: .utf8)
        let d = Process()
        d.executableURL = CLI.executable
        d.arguments = ["up", "--config", cli.path("node.toml"), "--name", "from-flag"]
        d.currentDirectoryURL = URL(fileURLWithPath: "/")
        d.standardInput = FileHandle.nullDevice
        d.standardOutput = FileHandle.nullDevice
        d.standardError = FileHandle.nullDevice
        try d.run()
        defer { if d.isRunning { kill(d.processIdentifier, SIGKILL) } }
        var s: [String: Any]?
        #expect(CLI.eventually(20, every: 0.1) {
            s = status(cli, cli.path("node"))
            return s?["address"] is String
        })
        #expect(s?["name"] as? String == "from-flag")
        #expect((s?["listen"] as? String)?.hasPrefix("127.0.0.1:") == true)
        #expect(s?["meshName"] as? String == "cfgtest")
        #expect(s?["tun"] == nil)
    }

    @Test func demoRunsARealMeshAndPrintsItsTable() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["demo", "--nodes", "3"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let header = lines.firstIndex { $0.hasPrefix("NAME ") }
        #expect(header != nil, "\(r.stdout)")
        guard let header else { return }
        #expect(lines[header].split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            == "NAME NODE ADDRESS OWNS (free space) SENT ACKED RECEIVED ADDRESS IN HANDSHAKE")
        var addresses: Set<String> = []
        for (i, name) in ["demo-1", "demo-2", "demo-3"].enumerated() {
            let row = lines[header + 1 + i].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            #expect(row.first == name)
            #expect(row[1].count == 16 && row[1].allSatisfy(\.isHexDigit), "fingerprint: \(row)")
            #expect(row[2].hasPrefix("100.64.0."), "address: \(row)")
            addresses.insert(row[2])
            #expect(row.suffix(7).prefix(3) == ["1", "1", "1"], "sent/acked/received: \(row)")
            #expect(row.last == "ms")
        }
        #expect(addresses.count == 3)
        #expect(lines.contains { $0.hasPrefix("OK: 3 nodes, 3 distinct addresses") })
        // Progress came as it happened: joins, addresses, acknowledgements.
        #expect(r.stdout.contains("demo-3 holds 100.64.0.") && r.stdout.contains("demo-3 → demo-1: handshake, then message acknowledged in"))

        let j = try cli.run(["demo", "--nodes", "4", "--json"])
        #expect(j.status == 0, "\(j.stderr)")
        let o = try cli.json(j.stdout)
        #expect(o["ok"] as? Bool == true)
        let nodes = o["nodes"] as? [[String: Any]] ?? []
        #expect(nodes.count == 4)
        #expect(Set(nodes.compactMap { $0["address"] as? String }).count == 4)
        for n in nodes {
            #expect(n["messagesAcknowledged"] as? Int == 1 && n["messagesReceived"] as? Int == 1, "\(n)")
            #expect((n["handshakeMilliseconds"] as? Double ?? 0) > 0)
        }
        // The whole pool is accounted for: owned free space plus the four leases.
        let owned = nodes.flatMap { $0["owned"] as? [String] ?? [] }
        #expect(!owned.isEmpty)

        let bad = try cli.run(["demo", "--nodes", "1"])
        #expect(bad.status == 64 && bad.stderr.contains("--nodes: 1 is out of range: use 2 to 16"))
    }

    // MARK: Metrics

    /// GET over a plain TCP socket: status line, headers and body.
    static func httpGet(_ endpoint: String, _ path: String) throws -> (status: Int, headers: String, body: String) {
        let parts = endpoint.split(separator: ":")
        let port = UInt16(parts.last!)!
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw CLIFailure("connect to \(endpoint): errno \(errno)") }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            data += buf[0..<n]
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw CLIFailure("no HTTP response: \(text)") }
        let head = String(text[..<split.lowerBound])
        let status = Int(head.split(separator: " ")[1]) ?? 0
        return (status, head, String(text[split.upperBound...]))
    }

    struct CLIFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// The value of one series (`name{labels}` exactly as exported).
    static func value(_ body: String, _ series: String) -> Double? {
        for line in body.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    /// Two nodes over an IPv6 underlay (::1): join, addresses, an acknowledged message.
    @Test func nodesWorkOverIPv6() throws {
        // Skip where the machine has no IPv6 loopback.
        let probe = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_addr.__in6_u.__u6_addr8.15 = 1
        let v6 = probe >= 0 && withUnsafePointer(to: &sin6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } } == 0
        close(probe)
        guard v6 else {
            print("note: IPv6 test skipped: this machine cannot bind a UDP socket to ::1")
            return
        }
        let cli = CLI()
        var nodes: [Process] = []
        defer {
            for p in nodes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
            cli.cleanup()
        }
        let create = try cli.run(["mesh", "create", "--name", "v6test", "--pool", "100.97.0.0/24", "--key", cli.path("a/identity.key"), "--out", cli.path("v.mesh")])
        #expect(create.status == 0)
        func start(_ name: String, _ extra: [String]) throws -> Process {
            let p = Process()
            p.executableURL = CLI.executable
            p.arguments = ["up", "--mesh", cli.path("v.mesh"), "--state", cli.path(name), "--listen", "[::1]:0", "--no-tun", "--name", name] + extra
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        nodes.append(try start("a", []))
        var listen = ""
        #expect(CLI.eventually(10, every: 0.1) {
            listen = status(cli, cli.path("a"))?["listen"] as? String ?? ""
            return listen.hasPrefix("[::1]:")
        }, "a did not listen on ::1: \(listen)")
        nodes.append(try start("b", ["--peer", listen]))
        for n in ["a", "b"] {
            #expect(CLI.eventually(20, every: 0.1) {
                guard let s = status(cli, cli.path(n)), s["address"] is String, let m = s["members"] as? [String: Int] else { return false }
                return m["alive"] == 2
            }, "\(n) did not settle over IPv6")
        }
        let sent = try cli.run(["send", "--state", cli.path("b"), "a", "hello over IPv6"])
        #expect(sent.status == 0, "\(sent.stderr)")
    }

    /// A metrics port that is taken stops the start before the node saves or sends anything.
    @Test func aTakenMetricsPortFailsTheStartCleanly() throws {
        let cli = CLI()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer {
            close(fd)
            cli.cleanup()
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        #expect(ok)
        let port = UInt16(bigEndian: addr.sin_port)
        let create = try cli.run(["mesh", "create", "--name", "ptest", "--pool", "100.96.0.0/24", "--key", cli.path("st/identity.key"), "--out", cli.path("p.mesh")])
        #expect(create.status == 0)
        let r = try cli.run(["up", "--mesh", cli.path("p.mesh"), "--state", cli.path("st"), "--listen", "127.0.0.1:0", "--no-tun",
                             "--metrics", "127.0.0.1:\(port)"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("cannot serve metrics on 127.0.0.1:\(port):") && r.stderr.contains("choose another --metrics address or port"), "\(r.stderr)")
        #expect(!cli.exists("st/node.json"), "the failed start took an incarnation")
        #expect(!cli.exists("st/control.sock"))
    }

    @Test func metricsAreServedAndMoveWithTraffic() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        let create = try cli.run(["mesh", "create", "--name", "mtest", "--pool", "100.94.0.0/24", "--key", cli.path("state-a/identity.key"),
                                  "--out", cli.path("m.mesh")])
        #expect(create.status == 0, "\(create.stderr)")
        let a = try Daemon(cli: cli, name: "a", mesh: cli.path("m.mesh"), peers: [], extra: ["--metrics", "127.0.0.1:0"])
        daemons.append(a)
        var listen = "", metrics = ""
        #expect(CLI.eventually(10, every: 0.1) {
            guard let s = status(cli, a.state), let l = s["listen"] as? String, let m = s["metrics"] as? String else { return false }
            (listen, metrics) = (l, m)
            return true
        }, "\(a.logText)")
        let b = try Daemon(cli: cli, name: "b", mesh: cli.path("m.mesh"), peers: [listen])
        daemons.append(b)
        for d in [a, b] {
            #expect(CLI.eventually(20, every: 0.1) {
                guard let s = status(cli, d.state), s["address"] is String, let m = s["members"] as? [String: Int] else { return false }
                return m["alive"] == 2
            }, "\(d.name) did not settle: \(d.logText)")
        }
        #expect(metrics.hasPrefix("127.0.0.1:") && !metrics.hasSuffix(":0"))
        #expect(a.logText.contains("serving metrics"))

        let first = try Self.httpGet(metrics, "/metrics")
        #expect(first.status == 200)
        #expect(first.headers.contains("Content-Type: text/plain; version=0.0.4"))
        let body = first.body
        for name in ["meshwork_info", "meshwork_up_seconds", "meshwork_members", "meshwork_leases", "meshwork_pool_addresses",
                     "meshwork_pool_free_addresses", "meshwork_pool_owned_addresses", "meshwork_address_leased", "meshwork_sessions",
                     "meshwork_handshakes_total", "meshwork_datagrams_total", "meshwork_datagram_bytes_total", "meshwork_packets_total",
                     "meshwork_payload_bytes_total", "meshwork_drops_total", "meshwork_relay_packets_total", "meshwork_relay_forwarded_bytes_total",
                     "meshwork_messages_total", "meshwork_overlay_packets_total"] {
            #expect(body.contains("\n# TYPE \(name) ") || body.hasPrefix("# TYPE \(name) "), "\(name) missing")
        }
        #expect(body.contains("# TYPE meshwork_handshakes_total counter"))
        #expect(body.contains("# TYPE meshwork_members gauge"))
        #expect(Self.value(body, "meshwork_members{status=\"alive\"}") == 2)
        #expect(Self.value(body, "meshwork_leases") == 2)
        #expect(Self.value(body, "meshwork_pool_addresses") == 254)
        #expect(Self.value(body, "meshwork_pool_free_addresses") == 252)
        #expect(Self.value(body, "meshwork_address_leased") == 1)
        #expect(Self.value(body, "meshwork_drops_total{reason=\"bad_mac\"}") == 0)
        #expect(Self.value(body, "meshwork_relay_packets_total{role=\"forwarded\"}") == 0)
        #expect(Self.value(body, "meshwork_send_errors_total") == 0)
        let acked0 = Self.value(body, "meshwork_messages_total{event=\"acknowledged\"}")
        let out0 = Self.value(body, "meshwork_datagrams_total{direction=\"out\"}") ?? -1
        #expect(acked0 == 0)

        let sent = try cli.run(["send", "--state", a.state, "b", "hello metrics"])
        #expect(sent.status == 0, "\(sent.stderr)")
        // A scrape is rendered at most once a second: wait for the next rendering.
        var second = ""
        #expect(CLI.eventually(5, every: 0.2) {
            second = (try? Self.httpGet(metrics, "/metrics").body) ?? ""
            return Self.value(second, "meshwork_messages_total{event=\"acknowledged\"}") == 1
        }, "the acknowledged message never showed: \(second)")
        #expect(Self.value(second, "meshwork_messages_total{event=\"sent\"}") == 1)
        #expect((Self.value(second, "meshwork_handshakes_total{result=\"completed\"}") ?? 0) >= 1)
        #expect((Self.value(second, "meshwork_packets_total{direction=\"out\"}") ?? 0) >= 1)
        #expect(Self.value(second, "meshwork_sessions") == 1)
        #expect((Self.value(second, "meshwork_datagrams_total{direction=\"out\"}") ?? 0) > out0)

        let missing = try Self.httpGet(metrics, "/nothing")
        #expect(missing.status == 404 && missing.body.contains("/metrics"))
    }

    // MARK: systemd readiness

    @Test func readinessIsNotifiedToSystemd() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        let sock = cli.path("notify.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer {
            close(fd)
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(sock.utf8) + [0]) }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0)
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var received: [String] = []
        func receive(until marker: String, within seconds: Double) -> Bool {
            CLI.eventually(seconds, every: 0) {
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 { received.append(String(decoding: buf[0..<n], as: UTF8.self)) }
                return received.contains { $0.contains(marker) }
            }
        }

        let create = try cli.run(["mesh", "create", "--name", "ntest", "--pool", "100.95.0.0/24", "--key", cli.path("state-a/identity.key"),
                                  "--out", cli.path("n.mesh")])
        #expect(create.status == 0)
        let a = try Daemon(cli: cli, name: "a", mesh: cli.path("n.mesh"), peers: [], environment: ["NOTIFY_SOCKET": sock])
        daemons.append(a)
        #expect(receive(until: "READY=1", within: 15), "\(received) \(a.logText)")
        // Ready means answering: the control socket works at once.
        #expect(status(cli, a.state) != nil)
        #expect(received.first?.hasPrefix("READY=1\nSTATUS=node ") == true)

        let leave = try cli.run(["leave", "--state", a.state])
        #expect(leave.status == 0, "\(leave.stderr)")
        #expect(receive(until: "STOPPING=1", within: 15), "\(received)")
    }
}

/// State files outgrow the 1 MiB that bounds keys and tokens.
@Suite struct StateFileSizeTests {
    @Test func aPoolFileOverOneMebibyteStillLoads() throws {
        let dir = NSTemporaryDirectory() + "meshwork-state-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Valid JSON, 3 MiB of it whitespace: what matters is the size.
        let json = "{\"version\":1,\"meshId\":\"m1\",\"seq\":7,\"grants\":[]" + String(repeating: " ", count: 3 << 20) + "}"
        try json.write(toFile: dir + "/pool.json", atomically: true, encoding: .utf8)
        let loaded = try PoolStateFile.load(from: dir + "/pool.json", meshId: "m1")
        #expect(loaded?.seq == 7)
        // Keys and tokens keep the small bound.
        #expect(throws: FileError.self) { _ = try AtomicFile.read(dir + "/pool.json") }
    }
}

/// A pool.json built on a checkpoint keeps it, and a corrupt one is reported, not reset.
@Suite struct PoolStateCheckpointTests {
    @Test func theCheckpointRoundTripsAndACorruptOneIsAnError() throws {
        let dir = NSTemporaryDirectory() + "meshwork-state-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = NodeID(Bytes32([UInt8](repeating: 1, count: 32))!), b = NodeID(Bytes32([UInt8](repeating: 2, count: 32))!)
        let pool = AddressRange(100 << 24 | 64 << 16 | 1, 100 << 24 | 64 << 16 | 254)
        let g = Grant(grantor: a, seq: 4, parent: .zero, range: pool, grantee: b, kind: .space)
        let cp = PoolCheckpoint(number: 3, previous: Bytes32([UInt8](repeating: 9, count: 32))!,
                                marks: [PoolCheckpoint.Mark(grantor: a, seq: 4)],
                                holdings: [PoolCheckpoint.Holding(ref: Bytes32([UInt8](repeating: 7, count: 32))!, grant: g, held: RangeSet(pool))],
                                signatures: [PoolCheckpoint.Signature(signer: b, signature: [UInt8](repeating: 5, count: 64))])
        let path = dir + "/pool.json"
        try PoolStateFile(meshId: "m1", seq: 9, grants: [], checkpoint: cp).save(to: path)
        let loaded = try #require(try PoolStateFile.load(from: path, meshId: "m1"))
        #expect(try loaded.decodedCheckpoint(path: path) == cp)
        // One byte of the checkpoint changed so that it no longer decodes: reported.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let hex = try #require(loaded.checkpoint)
        text = text.replacingOccurrences(of: hex, with: String(hex.dropLast(2)))
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: StateFileError.self) { _ = try PoolStateFile.load(from: path, meshId: "m1") }
    }
}

/// Socket addresses and endpoints convert byte for byte (every datagram does, both ways).
@Suite struct SocketAddressTests {
    @Test func endpointsAndSocketAddressesRoundTrip() throws {
        for text in ["192.0.2.7:51830", "127.0.0.1:1", "[2001:db8::1]:9", "[::1]:65535", "[fe80::1:2:3:4]:443"] {
            let e = try #require(Endpoint(text))
            let sa = try #require(e.socketAddress)
            #expect(Endpoint(sa) == e, "\(text)")
            #expect(sa.port == Int(e.port))
            // NIO's own text of the address agrees with ours.
            #expect(try SocketAddress(ipAddress: e.hostText, port: Int(e.port)) == sa)
        }
        // A peer reached over an IPv6 socket with an IPv4-mapped address is an IPv4 peer.
        let mapped = try SocketAddress(ipAddress: "::ffff:192.0.2.7", port: 5)
        #expect(Endpoint(mapped) == Endpoint("192.0.2.7:5"))
        #expect(Endpoint(try SocketAddress(ipAddress: "2001:db8::1", port: 9)) == Endpoint("[2001:db8::1]:9"))
        #expect(Endpoint(try SocketAddress(ipAddress: "10.1.2.3", port: 80)) == Endpoint("10.1.2.3:80"))
    }
}

/// pool.log: records appended crash-safe, read back in order; a torn last line is dropped,
/// a bad line anywhere else is reported with its number.
@Suite struct PoolLogTests {
    func grant(_ seq: UInt64) -> Grant {
        Grant(grantor: NodeID(bytes: [UInt8](repeating: 7, count: 32))!, seq: seq, parent: .zero,
              range: AddressRange(100 + UInt32(seq), 100 + UInt32(seq)), grantee: NodeID(bytes: [UInt8](repeating: 9, count: 32))!, kind: .lease)
    }

    @Test func recordsComeBackAndATornTailIsDropped() throws {
        let dir = NSTemporaryDirectory() + "meshwork-log-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/pool.log"
        #expect(try PoolLog.read(path: path, meshId: "m1").isEmpty)
        let records = (1...3).map { PoolLogRecord(seq: $0, grants: [grant($0)], votes: [:]) }
        do {
            let log = try PoolLog(path: path, meshId: "m1")
            for r in records { try log.append(r) }
        }
        #expect(try PoolLog.read(path: path, meshId: "m1") == records)
        // A crash mid-append: half a line, no newline. Reading drops it; opening cuts it.
        let h = try #require(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile()
        h.write(Data("{\"seq\":4,\"gra".utf8))
        try h.close()
        #expect(try PoolLog.read(path: path, meshId: "m1") == records)
        let more = PoolLogRecord(seq: 5, grants: [grant(5)], votes: [Bytes32([UInt8](repeating: 1, count: 32))!: NodeID(bytes: [UInt8](repeating: 2, count: 32))!])
        do {
            let log = try PoolLog(path: path, meshId: "m1")
            try log.append(more)
        }
        #expect(try PoolLog.read(path: path, meshId: "m1") == records + [more])
        // Another mesh's log is not read.
        #expect(throws: StateFileError.self) { _ = try PoolLog.read(path: path, meshId: "m2") }
        // Reset: back to the header alone.
        do {
            let log = try PoolLog(path: path, meshId: "m1")
            try log.reset()
        }
        #expect(try PoolLog.read(path: path, meshId: "m1").isEmpty)
    }

    @Test func aBadLineInTheMiddleIsReportedWithItsNumber() throws {
        let dir = NSTemporaryDirectory() + "meshwork-log-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/pool.log"
        do {
            let log = try PoolLog(path: path, meshId: "m1")
            try log.append(PoolLogRecord(seq: 1, grants: [grant(1)], votes: [:]))
        }
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text += "not json\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        do {
            let log = try PoolLog(path: path, meshId: "m1")
            try log.append(PoolLogRecord(seq: 2, grants: [grant(2)], votes: [:]))
        }
        #expect {
            _ = try PoolLog.read(path: path, meshId: "m1")
        } throws: { e in
            "\(e)".contains("line 3") && "\(e)".contains("corrupt")
        }
    }
}
