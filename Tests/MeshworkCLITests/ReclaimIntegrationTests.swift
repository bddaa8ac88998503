import Foundation
import Testing

/// Reclaim with real processes: automatically, by the majority's signed votes over UDP,
/// and by hand with `meshwork pool reclaim --force`.
@Suite(.serialized) struct ReclaimIntegrationTests {
    typealias Daemon = MembershipIntegrationTests.Daemon

    func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        try CLI.eventually(seconds, every: 0.25, condition)
    }

    func status(_ cli: CLI, _ d: Daemon) -> [String: Any]? {
        guard let r = try? cli.run(["status", "--state", d.state, "--json"]), r.status == 0 else { return nil }
        return try? cli.json(r.stdout)
    }

    /// Fingerprints of the nodes holding leases or free space, as node `d` sees the pool.
    func holders(_ cli: CLI, _ d: Daemon) -> Set<String> {
        guard let r = try? cli.run(["leases", "--state", d.state, "--json"]), r.status == 0, let j = try? cli.json(r.stdout) else { return [] }
        let leases = (j["leases"] as? [[String: Any]] ?? []).compactMap { $0["holderFingerprint"] as? String }
        let owners = (j["owners"] as? [[String: Any]] ?? []).compactMap { $0["ownerFingerprint"] as? String }
        return Set(leases + owners)
    }

    /// Starts `n` nodes on one mesh (the first is genesis), each bound before the next starts.
    func startMesh(_ cli: CLI, nodes n: Int, reclaim: String, extra: [String] = []) throws -> [Daemon] {
        let create = try cli.run(["mesh", "create", "--name", "reclaimtest", "--pool", "100.90.0.0/24", "--reclaim", reclaim,
                                  "--key", cli.path("state-r1/identity.key"), "--out", cli.path("r.mesh")])
        #expect(create.status == 0, "\(create.stderr)")
        var daemons = [try Daemon(cli: cli, name: "r1", mesh: cli.path("r.mesh"), peers: [], extra: extra)]
        var listen = ""
        #expect(eventually(10) {
            guard let l = status(cli, daemons[0])?["listen"] as? String else { return false }
            listen = l
            return true
        })
        for i in 2...n {
            let d = try Daemon(cli: cli, name: "r\(i)", mesh: cli.path("r.mesh"), peers: [listen], extra: extra)
            daemons.append(d)
            #expect(eventually(20) { status(cli, d)?["address"] is String }, "r\(i) got no address: \(d.logText)")
        }
        return daemons
    }

    @Test func theMajorityReclaimsADeadNodesAddressAndSpace() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        daemons = try startMesh(cli, nodes: 4, reclaim: "3s")
        // The last joiner holds at most a quarter of the pool: the other three are a majority.
        let victim = daemons[3]
        let fp = try #require(status(cli, victim)?["fingerprint"] as? String)
        let survivors = Array(daemons[0..<3])
        #expect(eventually(20) { survivors.allSatisfy { holders(cli, $0).contains(fp) } })
        victim.kill(SIGKILL)
        victim.process.waitUntilExit()
        let reclaimed = eventually(60) { survivors.allSatisfy { !holders(cli, $0).contains(fp) } }
        #expect(reclaimed, "the dead node still holds space: \(survivors.map { holders(cli, $0) })\n\(daemons[0].logText)")
        let made = survivors.reduce(0) { n, d in n + (((status(cli, d)?["counters"] as? [String: Any])?["poolReclaims"] as? Int) ?? 0) }
        #expect(made >= 1, "no survivor counts a reclaim")
        let votes = survivors.reduce(0) { n, d in n + (((status(cli, d)?["counters"] as? [String: Any])?["poolVotes"] as? Int) ?? 0) }
        #expect(votes >= 1, "no survivor voted")
        for d in survivors { #expect(status(cli, d)?["poolFenced"] as? Bool == false) }
        // By hand, now: nothing left to take; a live node is refused; without --force, a lesson.
        let admin = cli.path("reclaimtest.admin.key")
        let nothing = try cli.run(["pool", "reclaim", String(fp.prefix(8)), "--force", "--admin-key", admin, "--state", survivors[0].state])
        #expect(nothing.status == 1)
        #expect(nothing.stderr == "Error: \(String(fp.prefix(16))) holds no part of the pool in this node's view; nothing to reclaim\n")
        let alive = try cli.run(["pool", "reclaim", "r2", "--force", "--admin-key", admin, "--state", survivors[0].state])
        #expect(alive.status == 1)
        #expect(alive.stderr.contains("is alive (membership says so); reclaim refuses a live node"), "\(alive.stderr)")
        let unforced = try cli.run(["pool", "reclaim", "r2", "--state", survivors[0].state])
        #expect(unforced.status == 64)
        #expect(unforced.stderr.contains("reclaiming by hand is unsafe while 'r2' might be alive"), "\(unforced.stderr)")
        let keyless = try cli.run(["pool", "reclaim", "r2", "--force", "--state", survivors[0].state])
        #expect(keyless.status == 64)
        #expect(keyless.stderr.contains("--force needs --admin-key FILE"), "\(keyless.stderr)")
        let unknown = try cli.run(["pool", "reclaim", "nosuchnode", "--force", "--admin-key", admin, "--state", survivors[0].state])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no node named 'nosuchnode'"), "\(unknown.stderr)")
    }

    @Test func aTwoNodeMeshReclaimsByHandWithForce() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        // A reclaim time far away: only --force can do it.
        daemons = try startMesh(cli, nodes: 2, reclaim: "1h")
        let (keeper, gone) = (daemons[0], daemons[1])
        let fp = try #require(status(cli, gone)?["fingerprint"] as? String)
        let goneAddress = try #require(status(cli, gone)?["address"] as? String)
        #expect(eventually(20) { holders(cli, keeper).contains(fp) })
        gone.kill(SIGKILL)
        gone.process.waitUntilExit()
        // A member's own key is not the admin key: refused, nothing changes.
        let notAdmin = try cli.run(["pool", "reclaim", "r2", "--force", "--admin-key", cli.path("state-r1/identity.key"), "--state", keeper.state])
        #expect(notAdmin.status == 1)
        #expect(notAdmin.stderr.contains("is not this mesh's admin key") || notAdmin.stderr.contains("is alive"), "\(notAdmin.stderr)")
        // Once membership says it is dead, the keeper may take its space by hand, with the admin key.
        let admin = cli.path("reclaimtest.admin.key")
        #expect(eventually(60) {
            guard let r = try? cli.run(["pool", "reclaim", "r2", "--force", "--admin-key", admin, "--state", keeper.state, "--json"]), r.status == 0,
                  let j = try? cli.json(r.stdout) else { return false }
            return j["fingerprint"] as? String == String(fp.prefix(16)) && (j["ranges"] as? [String])?.isEmpty == false
        }, "forced reclaim never succeeded: \(keeper.logText)")
        #expect(!holders(cli, keeper).contains(fp))
        let s = status(cli, keeper)
        // One reclaim per holding (its lease, its space).
        #expect((((s?["counters"] as? [String: Any])?["poolForcedReclaims"] as? Int) ?? 0) >= 1)
        // The departed node's address is the keeper's free space again.
        guard let r = try? cli.run(["leases", "--state", keeper.state, "--json"]), let j = try? cli.json(r.stdout) else {
            Issue.record("no leases answer")
            return
        }
        let leased = (j["leases"] as? [[String: Any]] ?? []).compactMap { $0["address"] as? String }
        #expect(!leased.contains(goneAddress))
    }
}
