import Foundation
import Testing

/// Ten real `meshwork up --no-tun` processes on 127.0.0.1 share one pool with no server.
@Suite(.serialized) struct PoolIntegrationTests {
    typealias Daemon = MembershipIntegrationTests.Daemon

    func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        try CLI.eventually(seconds, every: 0.2, condition)
    }

    func address(_ cli: CLI, _ d: Daemon) -> String? {
        guard let r = try? cli.run(["status", "--state", d.state, "--json"]), r.status == 0,
              let j = try? cli.json(r.stdout) else { return nil }
        return j["address"] as? String
    }

    /// Address → holder name, as node `d` sees the leases.
    func leases(_ cli: CLI, _ d: Daemon) -> [String: String] {
        guard let r = try? cli.run(["leases", "--state", d.state, "--json"]), r.status == 0,
              let j = try? cli.json(r.stdout), let list = j["leases"] as? [[String: Any]] else { return [:] }
        var out: [String: String] = [:]
        for l in list { out[l["address"] as! String] = l["holderName"] as? String ?? "?" }
        return out
    }

    @Test func tenNodesGetDistinctAddressesAgreeOnLeasesAndKeepThemAcrossKill9() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        #expect(try cli.run(["mesh", "create", "--name", "pooltest", "--pool", "100.80.0.0/16", "--key", cli.path("state-n1/identity.key"),
                             "--out", cli.path("p.mesh")]).status == 0)
        let mesh = cli.path("p.mesh")
        let first = try Daemon(cli: cli, name: "n1", mesh: mesh, peers: [])
        daemons.append(first)
        var listen = ""
        #expect(eventually(10) {
            guard let r = try? cli.run(["status", "--state", first.state, "--json"]), r.status == 0,
                  let l = (try? cli.json(r.stdout))?["listen"] as? String else { return false }
            listen = l
            return true
        })
        for i in 2...10 { daemons.append(try Daemon(cli: cli, name: "n\(i)", mesh: mesh, peers: [listen])) }

        var addresses: [String: String] = [:]
        let allBound = eventually(40) {
            addresses = [:]
            for d in daemons { if let a = address(cli, d) { addresses[d.name] = a } }
            return addresses.count == 10
        }
        #expect(allBound, "not all bound: \(addresses)\n\(daemons.last!.logText)")
        #expect(Set(addresses.values).count == addresses.count, "duplicate addresses: \(addresses)")
        for a in addresses.values { #expect(a.hasPrefix("100.80."), "\(a) outside the pool") }

        // Every node's lease table agrees: ten leases, each held by the node that says it holds it.
        let expected = Dictionary(uniqueKeysWithValues: addresses.map { ($0.value, $0.key) })
        let agree = eventually(45) { daemons.allSatisfy { leases(cli, $0) == expected } }
        #expect(agree, "lease tables differ: \(daemons.map { leases(cli, $0) })")

        // kill -9 and restart: the same address.
        let victim = daemons[4]
        let before = addresses[victim.name]
        // Saved as records appended to pool.log (pool.json is its snapshot, written when the
        // log grows large and on a clean stop).
        let saved = eventually(10) { ((try? String(contentsOfFile: victim.state + "/pool.log", encoding: .utf8)) ?? "").split(separator: "\n").count > 1 }
        #expect(saved)
        victim.kill(SIGKILL)
        victim.process.waitUntilExit()
        let again = try Daemon(cli: cli, name: victim.name, mesh: mesh, peers: [listen])
        daemons.append(again)
        #expect(eventually(20) { address(cli, again) != nil })
        #expect(address(cli, again) == before, "restarted node changed address: \(again.logText)")

        // 'meshwork leave': the node releases its address and exits; the others stop listing it.
        let leaver = daemons[7]
        let leaverAddress = addresses[leaver.name]!
        let leave = try cli.run(["leave", "--state", leaver.state])
        #expect(leave.status == 0, "\(leave.stderr)")
        #expect(leave.stdout == "Released \(leaverAddress) and left the mesh.\n")
        leaver.process.waitUntilExit()
        #expect(leaver.process.terminationStatus == 0, "\(leaver.logText)")
        let remaining = daemons.filter { $0.process.isRunning }
        #expect(eventually(45) { remaining.allSatisfy { leases(cli, $0)[leaverAddress] == nil } },
                "the released address is still listed: \(remaining.map { leases(cli, $0) })")

        for d in daemons where d.process.isRunning {
            d.kill(SIGTERM)
            d.process.waitUntilExit()
        }
    }
}
