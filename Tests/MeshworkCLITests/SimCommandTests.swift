import Foundation
import Testing

/// The simulator commands, run small, through the real executable.
@Suite struct SimCommandTests {
    @Test func simGossipReportsItsFigures() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["sim", "gossip", "--nodes", "30", "--duration", "60s", "--seed", "3", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try cli.json(r.stdout)
        let report = try #require(j["report"] as? [String: Any])
        #expect(report["nodes"] as? Int == 30)
        #expect(report["falseDeaths"] as? Int == 0)
        let join = try #require(report["joinKnownByAll"] as? [String: Any])
        #expect((join["count"] as? Int ?? 0) >= 3)
        #expect((join["p99"] as? Double ?? 99) < 5)
        let crash = try #require(report["crashDeclaredByAll"] as? [String: Any])
        #expect((crash["count"] as? Int ?? 0) >= 3)
        #expect((report["bytesPerNodePerSecond"] as? Double ?? 0) > 0)
    }

    @Test func simPoolReportsNoDuplicatesUnderChurn() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["sim", "pool", "--nodes", "60", "--loss", "0.05", "--churn", "2", "--seed", "4", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try #require(try cli.json(r.stdout)["report"] as? [String: Any])
        #expect(report["duplicatesSeen"] as? Int == 0)
        #expect(report["duplicatesAtEnd"] as? Int == 0)
        #expect(report["withoutAddress"] as? Int == 0)
        #expect((report["nodes"] as? Int ?? 0) > 60, "churn added nodes")
        #expect((report["largestOwnerShare"] as? Double ?? 1) < 0.5)
        #expect(report["leasesLost"] as? Int == 0)
    }

    /// The scenario from the command line: 40% of a settled mesh of whole nodes
    /// killed; as many new ones join and get addresses within the reclaim time plus 10 s.
    @Test func simPoolKillsFortyPercentAndReplacementsGetAddresses() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["sim", "pool", "--nodes", "20", "--kill", "0.4", "--kill-at", "15s", "--reclaim", "20s", "--seed", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try #require(try cli.json(r.stdout)["report"] as? [String: Any])
        #expect(report["killed"] as? Int == 8)
        #expect(report["duplicatesSeen"] as? Int == 0)
        #expect(report["leasesLost"] as? Int == 0)
        #expect(report["withoutAddress"] as? Int == 0)
        #expect((report["replacementsBoundAfter"] as? Double ?? 99) <= 30)
        // Replacements that joined while the dead were not yet declared dead may see
        // themselves fenced for a moment (their views incomplete); none may lapse.
        #expect(report["leasesLapsed"] as? Int == 0)
    }

    @Test(arguments: [
        (["sim", "pool", "--nodes", "1"], "Error: --nodes: 1 is out of range: use 2 to 10000"),
        (["sim", "pool", "--loss", "0.9"], "Error: --loss: 0.9 is out of range: use a probability from 0 to 0.5, e.g. 0.05"),
        (["sim", "pool", "--partition-at", "5s"], "Error: --partition-at and --heal-at go together: give both, e.g. --partition-at 1s --heal-at 20s"),
        (["sim", "pool", "--partition-at", "5s", "--heal-at", "2s"], "Error: --heal-at must be later than --partition-at"),
        (["sim", "pool", "--kill", "0.4"], "Error: --kill needs a short --reclaim: the run lasts the reclaim time after the kill; e.g. --kill 0.4 --reclaim 20s"),
        (["sim", "pool", "--kill", "1"], "Error: --kill: 1.0 is out of range: use a fraction from 0 to 0.9, e.g. 0.4"),
        (["sim", "gossip", "--duration", "soon"], "Error: --duration: 'soon' is not a duration: write a whole number with a unit s, m, h or d (e.g. 90s, 15m, 24h, 7d)"),
    ])
    func badArgumentsAreNamed(args: [String], message: String) throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(args)
        #expect(r.status == 64)
        #expect(r.stderr.hasPrefix(message + "\n"), "\(r.stderr)")
    }
}
