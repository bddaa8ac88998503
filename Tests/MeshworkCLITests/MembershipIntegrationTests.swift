import Foundation
import Testing

/// Real `meshwork up` processes on 127.0.0.1, talking over real UDP sockets.
@Suite(.serialized) struct MembershipIntegrationTests {
    final class Daemon {
        let process = Process()
        let name: String
        let state: String
        let log: String

        init(cli: CLI, name: String, mesh: String, peers: [String], extra: [String] = [], environment: [String: String] = [:]) throws {
            self.name = name
            state = cli.path("state-\(name)")
            log = cli.path("\(name).log")
            process.executableURL = CLI.executable
            process.arguments = ["up", "--mesh", mesh, "--state", state, "--listen", "127.0.0.1:0", "--no-tun", "--name", name]
                + peers.flatMap { ["--peer", $0] } + extra
            if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let handle = FileHandle(forWritingAtPath: log)!
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        func kill(_ signal: Int32) { Glibc.kill(process.processIdentifier, signal) }
        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        try CLI.eventually(seconds, every: 0.1, condition)
    }

    func peers(_ cli: CLI, _ d: Daemon) -> [String: String] {
        guard let r = try? cli.run(["peers", "--state", d.state, "--json"]), r.status == 0,
              let j = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let list = j["peers"] as? [[String: Any]] else { return [:] }
        var out: [String: String] = [:]
        for p in list { out[p["name"] as! String] = p["status"] as? String }
        return out
    }

    @Test func fiveNodesJoinDetectACrashAndWelcomeItBack() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        let create = try cli.run(["mesh", "create", "--name", "itest", "--pool", "100.80.0.0/16", "--key", cli.path("state-n1/identity.key"), "--out", cli.path("itest.mesh")])
        #expect(create.status == 0, "\(create.stderr)")
        let mesh = cli.path("itest.mesh")

        let first = try Daemon(cli: cli, name: "n1", mesh: mesh, peers: [])
        daemons.append(first)
        var listen = ""
        #expect(eventually(10) {
            guard let r = try? cli.run(["status", "--state", first.state, "--json"]), r.status == 0,
                  let j = try? cli.json(r.stdout), let l = j["listen"] as? String else { return false }
            listen = l
            return true
        }, "n1 did not start: \(first.logText)")
        for i in 2...5 { daemons.append(try Daemon(cli: cli, name: "n\(i)", mesh: mesh, peers: [listen])) }

        let allAlive = eventually(30) { daemons.allSatisfy { d in let p = peers(cli, d); return p.count == 5 && p.values.allSatisfy { $0 == "alive" } } }
        #expect(allAlive, "not all 5 alive: \(daemons.map { peers(cli, $0) })")
        let status = try cli.json(try cli.run(["status", "--state", first.state, "--json"]).stdout)
        #expect((status["members"] as? [String: Int])?["alive"] == 5)

        // kill -9 one node: the others declare it dead.
        let victim = daemons[2]
        let saved = eventually(10) {
            guard let d = FileManager.default.contents(atPath: victim.state + "/node.json"),
                  let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return false }
            return (j["peers"] as? [Any])?.count == 4
        }
        #expect(saved, "the victim never saved its peers")
        victim.kill(SIGKILL)
        victim.process.waitUntilExit()
        let others = daemons.filter { $0 !== victim }
        let dead = eventually(60) { others.allSatisfy { peers(cli, $0)[victim.name] == "dead" } }
        #expect(dead, "crash not declared dead by all: \(others.map { peers(cli, $0) })")

        // Restart with the same state directory and no --peer: it rejoins through the peers it saved.
        let again = try Daemon(cli: cli, name: victim.name, mesh: mesh, peers: [])
        daemons.append(again)
        let back = eventually(30) { (others + [again]).allSatisfy { d in let p = peers(cli, d); return p.count == 5 && p.values.allSatisfy { $0 == "alive" } } }
        #expect(back, "restarted node not alive to all: \((others + [again]).map { peers(cli, $0) })\n\(again.logText)")

        // SIGTERM: each node announces it is leaving and exits 0.
        let leaver = others[0]
        leaver.kill(SIGTERM)
        leaver.process.waitUntilExit()
        #expect(leaver.process.terminationStatus == 0, "\(leaver.logText)")
        let left = eventually(10) { daemons.filter { $0.process.isRunning }.allSatisfy { peers(cli, $0)[leaver.name] == "left" } }
        #expect(left)
        for d in daemons where d.process.isRunning {
            d.kill(SIGTERM)
            d.process.waitUntilExit()
            #expect(d.process.terminationStatus == 0, "\(d.name): \(d.logText)")
        }
    }

    @Test func secondDaemonOnOneStateDirectoryIsRefused() throws {
        let cli = CLI()
        var running: Daemon?
        defer {
            if let d = running, d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        #expect(try cli.run(["mesh", "create", "--name", "x", "--pool", "100.80.0.0/16", "--key", cli.path("state-a/identity.key"), "--out", cli.path("x.mesh")]).status == 0)
        let a = try Daemon(cli: cli, name: "a", mesh: cli.path("x.mesh"), peers: [])
        running = a
        #expect(eventually(10) { (try? cli.run(["status", "--state", a.state]))?.status == 0 })
        let b = try cli.run(["up", "--mesh", cli.path("x.mesh"), "--state", a.state, "--listen", "127.0.0.1:0", "--no-tun"])
        #expect(b.status == 1)
        #expect(b.stderr.contains("another 'meshwork up' is already running with state directory \(a.state)"))
    }

    @Test func statusWithoutANodeSaysSo() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["status", "--state", cli.path("nothing")])
        #expect(r.status == 1)
        #expect(r.stderr == "Error: no meshwork node is running with state directory \(cli.path("nothing")) (no control socket answered); start one with 'meshwork up', or pass --state DIR\n")
    }

    @Test func corruptStateIsReportedNotReset() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        #expect(try cli.run(["mesh", "create", "--name", "x", "--pool", "100.80.0.0/16", "--key", cli.path("s/identity.key"), "--out", cli.path("x.mesh")]).status == 0)
        try "{ not json".write(toFile: cli.path("s/node.json"), atomically: true, encoding: .utf8)
        let r = try cli.run(["up", "--mesh", cli.path("x.mesh"), "--state", cli.path("s"), "--listen", "127.0.0.1:0", "--no-tun"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("node.json is corrupt (not valid node state JSON); it was not changed."))
        #expect(try String(contentsOfFile: cli.path("s/node.json"), encoding: .utf8) == "{ not json")
    }
}
