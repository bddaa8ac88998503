import ArgumentParser
import Foundation
import MeshCore
import MeshPool
import MeshSim

struct Sim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run protocol simulations: many nodes in one process, on virtual time.",
        discussion: """
            The simulator runs the real protocol state machines on a virtual network with \
            latency, jitter and loss. A run is a pure function of its seed: rerun a seed to \
            replay it exactly. Signing and sealing use cost-free stand-ins here (only here), \
            so a thousand nodes run for ten simulated minutes in seconds.
            """,
        subcommands: [GossipSim.self, PoolSim.self, MessagesSim.self]
    )
}

struct GossipSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gossip",
        abstract: "Simulate membership: how fast joins and crashes reach everyone, and at what cost.",
        discussion: """
            Starts N nodes as a settled mesh (every node knows every other; --boot-by-joining \
            boots it by real joins instead), then for \
            --duration of simulated time adds new nodes and crashes running ones (N/20 of \
            each, 3 to 50), measuring each until every running node knows.

            Reports: time for a new node to be known by all (p50/p99/max); time for a crash to \
            be declared dead by all; false suspicions and false deaths of running nodes; gossip \
            messages and bytes sent per node per second.

            Examples:
              meshwork sim gossip --nodes 1000 --loss 0.05
              meshwork sim gossip --nodes 200 --seed 7 --duration 120s --json
            """
    )

    @Option(name: .long, help: "Number of nodes (2 to 5000).")
    var nodes: Int = 100

    @Option(name: .long, help: ArgumentHelp("Probability that a datagram is lost, 0 to 0.5.", valueName: "p"))
    var loss: Double = 0

    @Option(name: .long, help: "Seed of every random choice in the run.")
    var seed: UInt64 = 1

    @Option(name: .long, help: ArgumentHelp("Simulated time to measure for, after the mesh settles.", valueName: "duration"))
    var duration: String = "10m"

    @Flag(name: .long, help: "Boot the mesh by real joins instead of starting it settled (slow above a few hundred nodes).")
    var bootByJoining = false

    @Option(name: .long, help: ArgumentHelp("Override the probe interval (default 1s, memberlist LAN).", valueName: "duration"))
    var probeInterval: String?

    @Option(name: .long, help: ArgumentHelp("Override the suspicion multiplier (default 4, memberlist LAN); lower detects crashes sooner.", valueName: "n"))
    var suspicionMult: Int?

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        guard (2...5000).contains(nodes) else { throw ValidationError("--nodes: \(nodes) is out of range: use 2 to 5000") }
        guard loss >= 0, loss <= 0.5 else { throw ValidationError("--loss: \(loss) is out of range: use a probability from 0 to 0.5, e.g. 0.05") }
        do { _ = try DurationText.parseSeconds(duration) } catch { throw ValidationError("--duration: \(error.description)") }
        if let probeInterval {
            let s: UInt64
            do { s = try DurationText.parseSeconds(probeInterval) } catch { throw ValidationError("--probe-interval: \(error.description)") }
            guard s >= 1 else { throw ValidationError("--probe-interval: use at least 1s") }
        }
        if let suspicionMult, !(1...20).contains(suspicionMult) { throw ValidationError("--suspicion-mult: \(suspicionMult) is out of range: use 1 to 20") }
    }

    func run() throws {
        var scenario = GossipScenario()
        scenario.nodes = nodes
        scenario.loss = loss
        scenario.seed = seed
        scenario.bootByJoining = bootByJoining
        if let probeInterval { scenario.settings.probeInterval = .seconds(Double(try DurationText.parseSeconds(probeInterval))) }
        if let suspicionMult { scenario.settings.suspicionMult = suspicionMult }
        scenario.bootByJoining = bootByJoining
        scenario.duration = .seconds(Double(try DurationText.parseSeconds(duration)))
        let clock = ContinuousClock()
        let start = clock.now
        let report = scenario.run(progress: json ? nil : { printErr("  \($0)") })
        let wall = (clock.now - start)
        if json {
            struct Out: Encodable {
                let report: GossipScenario.Report
                let wallSeconds: Double
            }
            try printJSON(Out(report: report, wallSeconds: Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18))
            return
        }
        func d(_ x: GossipScenario.Distribution) -> String {
            String(format: "p50 %.2fs  p99 %.2fs  max %.2fs  (%d measured%@)", x.p50, x.p99, x.max, x.count,
                   x.unfinished > 0 ? ", \(x.unfinished) unfinished" : "")
        }
        print("Gossip simulation: \(nodes) nodes, loss \(loss), seed \(seed), \(duration) measured")
        printFields([
            ("Mesh settled after", String(format: "%.1fs", report.bootstrapSeconds)),
            ("Join known by all", d(report.joinKnownByAll)),
            ("Crash dead to all", d(report.crashDeclaredByAll)),
            ("False suspicions", "\(report.falseSuspicions)"),
            ("False deaths", "\(report.falseDeaths)"),
            ("Per node", String(format: "%.1f msgs/s, %.0f bytes/s sent (with the injected churn)", report.messagesPerNodePerSecond, report.bytesPerNodePerSecond)),
            ("Per node, quiet", String(format: "%.1f msgs/s, %.0f bytes/s sent (last 15%%, no churn injected)", report.quietMessagesPerNodePerSecond, report.quietBytesPerNodePerSecond)),
            ("Datagrams lost", String(format: "%.1f%%", report.datagramsLostFraction * 100)),
            ("Wall time", "\(wall)"),
        ])
    }
}

struct PoolSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Simulate address allocation on whole nodes: how fast nodes get addresses, and that no two share one.",
        discussion: """
            N nodes join (200 per second) a mesh with a 100.64.0.0/16 pool and acquire \
            addresses by DISCOVER/OFFER/REQUEST/ACK from whoever owns free space. Each \
            simulated node is the node the daemon runs (gossip membership, the pool, and the \
            glue between them) on a virtual network and a virtual clock; only signatures and \
            sealing are stand-ins. A run is a pure function of its seed.

            Reports: time from start to address (p50/p99/max), nodes left without an address, \
            duplicates (every time a node took an address another running node held, and \
            addresses held twice at the end), acknowledged leases lost, datagrams sent per \
            allocation (all traffic), how ownership of the pool is spread, and reclaims made. \
            With --kill, a random fraction of the running nodes is killed at --kill-at and as \
            many new nodes join in the second after; the run goes on for the reclaim time \
            after the kill (use a short --reclaim) and reports when every replacement held an \
            address. A partition longer than --reclaim lets the side holding most of the \
            pool reclaim the other side's space; that side's nodes renumber on heal. With \
            --cycles, after the join phase a running node leaves for good (giving its space \
            back) and a new one joins, two cycles a simulated second, and the report adds \
            what history left behind: the most grants a view held, the largest state file \
            and the largest full anti-entropy exchange (checkpoints keep both to what the \
            live mesh holds).

            Examples:
              meshwork sim pool --nodes 300 --loss 0.05
              meshwork sim pool --nodes 100 --kill 0.4 --kill-at 20s --reclaim 20s
              meshwork sim pool --nodes 300 --partition-at 2s --heal-at 90s --reclaim 20s
              meshwork sim pool --nodes 200 --churn 2 --json
              meshwork sim pool --nodes 100 --cycles 2000
            """
    )

    @Option(name: .long, help: "Number of nodes (2 to 10000).")
    var nodes: Int = 100

    @Option(name: .long, help: ArgumentHelp("Probability that a datagram is lost, 0 to 0.5.", valueName: "p"))
    var loss: Double = 0

    @Option(name: .long, help: ArgumentHelp("Split the nodes in two at this simulated time.", valueName: "duration"))
    var partitionAt: String?

    @Option(name: .long, help: ArgumentHelp("Heal the partition at this simulated time.", valueName: "duration"))
    var healAt: String?

    @Option(name: .long, help: ArgumentHelp("Nodes replaced per second (one crashes, a new one joins), for at least 20 s.", valueName: "rate"))
    var churn: Double = 0

    @Option(name: .long, help: ArgumentHelp("Fraction of the running nodes killed at --kill-at, 0 to 0.9 (as many new ones join after).", valueName: "fraction"))
    var kill: Double = 0

    @Option(name: .long, help: ArgumentHelp("When --kill strikes (simulated time).", valueName: "duration"))
    var killAt: String = "30s"

    @Option(name: .long, help: ArgumentHelp("The mesh's reclaim time: how long a node must be gone before its space is reclaimed (the lease time is the same).", valueName: "duration"))
    var reclaim: String = "24h"

    @Option(name: .long, help: ArgumentHelp("Join/leave cycles after the join phase (one leaves for good, one joins; 2 a second), 0 to 1000000.", valueName: "count"))
    var cycles: Int = 0

    @Option(name: .long, help: ArgumentHelp("Grants a view holds before a checkpoint is proposed (0: never).", valueName: "grants"))
    var checkpointEvery: Int = PoolAgent.Settings().checkpointEvery

    @Option(name: .long, help: ArgumentHelp("Holdings of free space that make a node merge them into one (0: never).", valueName: "grants"))
    var mergeAt: Int = PoolAgent.Settings().mergeAt

    @Option(name: .long, help: "Seed of every random choice in the run.")
    var seed: UInt64 = 1

    @Flag(name: .long, help: ArgumentHelp("At the end, say why stopped nodes still hold space: per cause (crashed, given to them after they stopped or while leaving, kept on leave), and for the largest such owners each stretch, the grant that gave it (who signed it, when) and what the owner gave away as it left. Keeps every grant of the run in memory."))
    var explainStopped = false

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        do { _ = try DurationText.parseSeconds(reclaim) } catch { throw ValidationError("--reclaim: \(error.description)") }
        do { _ = try DurationText.parseSeconds(killAt) } catch { throw ValidationError("--kill-at: \(error.description)") }
        guard (2...10000).contains(nodes) else { throw ValidationError("--nodes: \(nodes) is out of range: use 2 to 10000") }
        guard loss >= 0, loss <= 0.5 else { throw ValidationError("--loss: \(loss) is out of range: use a probability from 0 to 0.5, e.g. 0.05") }
        guard churn >= 0, churn <= 100 else { throw ValidationError("--churn: \(churn) is out of range: use 0 to 100 nodes per second") }
        guard (0...1_000_000).contains(cycles) else { throw ValidationError("--cycles: \(cycles) is out of range: use 0 to 1000000") }
        guard checkpointEvery >= 0 else { throw ValidationError("--checkpoint-every: \(checkpointEvery) is negative: use 0 (never) or a number of grants, e.g. 512") }
        guard mergeAt == 0 || mergeAt >= 2 else {
            throw ValidationError("--merge-at: \(mergeAt) is out of range: use 0 (never) or 2 and up, e.g. 16")
        }
        guard kill >= 0, kill <= 0.9 else { throw ValidationError("--kill: \(kill) is out of range: use a fraction from 0 to 0.9, e.g. 0.4") }
        if kill > 0, (try? DurationText.parseSeconds(reclaim)) ?? 0 > 3600 {
            throw ValidationError("--kill needs a short --reclaim: the run lasts the reclaim time after the kill; e.g. --kill 0.4 --reclaim 20s")
        }
        for (flag, v) in [("partition-at", partitionAt), ("heal-at", healAt)] {
            if let v { do { _ = try DurationText.parseSeconds(v) } catch { throw ValidationError("--\(flag): \(error.description)") } }
        }
        if (partitionAt == nil) != (healAt == nil) { throw ValidationError("--partition-at and --heal-at go together: give both, e.g. --partition-at 1s --heal-at 20s") }
        if let p = partitionAt, let h = healAt, (try? DurationText.parseSeconds(h)) ?? 0 <= (try? DurationText.parseSeconds(p)) ?? 0 {
            throw ValidationError("--heal-at must be later than --partition-at")
        }
    }

    func run() throws {
        var s = PoolScenario()
        s.nodes = nodes
        s.loss = loss
        s.seed = seed
        s.churn = churn
        s.cycles = cycles
        s.checkpointEvery = checkpointEvery
        s.mergeAt = mergeAt
        s.explainStopped = explainStopped
        s.kill = kill
        s.killAt = .seconds(Double(try DurationText.parseSeconds(killAt)))
        s.reclaim = .seconds(Double(try DurationText.parseSeconds(reclaim)))
        if let p = partitionAt { s.partitionAt = .seconds(Double(try DurationText.parseSeconds(p))) }
        if let h = healAt { s.healAt = .seconds(Double(try DurationText.parseSeconds(h))) }
        let clock = ContinuousClock()
        let start = clock.now
        let r = s.run(progress: json ? nil : { printErr("  \($0)") })
        let wall = clock.now - start
        if json {
            struct Out: Encodable { let report: PoolScenario.Report; let wallSeconds: Double }
            try printJSON(Out(report: r, wallSeconds: Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18))
            return
        }
        let t = r.timeToAddress
        print("Pool simulation (whole nodes): \(r.nodes) nodes, loss \(loss), seed \(seed), pool \(r.pool)")
        var fields = [
            ("Time to address", String(format: "p50 %.2fs  p99 %.2fs  max %.2fs  (%d bound)", t.p50, t.p99, t.max, t.count)),
            ("Without address", "\(r.withoutAddress)"),
            ("Duplicates", "\(r.duplicatesSeen) taken while held, \(r.duplicatesAtEnd) at the end"),
            ("Leases lost", "\(r.leasesLost) acknowledged leases lost to a conflict; \(r.leasesLapsed) lapsed (fenced for half the lease time)"),
            ("Datagrams/alloc", String(format: "%.1f (gossip and pool)", r.datagramsPerAllocation)),
            ("Ownership", String(format: "largest owner %.2f%% of the pool; %d nodes own space; stopped nodes hold %.1f%%", r.largestOwnerShare * 100, r.owners, r.stoppedShare * 100)),
            ("Reclaims", "\(r.reclaims) made"),
        ]
        if r.cycles > 0 {
            fields.append(("History", "\(r.cycles) join/leave cycles; at most \(r.grantsHeldMax) grants held and \(r.holdingsMax) holdings in a checkpoint, state file \(r.stateFileBytesMax / 1024) KiB, full exchange \(r.fullExchangeBytesMax / 1024) KiB; \(r.checkpoints) checkpoints (\(r.checkpointsProposed) proposals, \(r.checkpointsRefused) refusals\(r.checkpointRefusal.map { ", most often: \($0)" } ?? ""))"))
            if r.rateLimitedGrants > 0 { fields.append(("Rate limited", "\(r.rateLimitedGrants) grants dropped over their grantor's limit")) }
            fields.append(("Releases", "\(r.releasesCurrent) gave with a current view, \(r.releasesOnTimeout) when the wait ran out, \(r.releasesNeverGave) never gave (never caught up)"))
        }
        if r.killed > 0 {
            fields.append(("Killed", "\(r.killed) nodes; " + (r.replacementsBoundAfter.map { String(format: "their replacements all bound %.1fs after the kill", $0) } ?? "some replacements never bound")))
        }
        fields += [("Simulated", String(format: "%.0fs", r.simulatedSeconds)), ("Wall time", "\(wall)")]
        printFields(fields)
        if r.duplicatesSeen > 0 || r.duplicatesAtEnd > 0 || r.leasesLost > 0 { throw ExitCode(1) }
    }
}

struct MessagesSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "messages",
        abstract: "Simulate two nodes exchanging messages over a lossy, reordering link: each must arrive once, in order.",
        discussion: """
            Two nodes with real sessions (Noise IKpsk2 handshakes, ChaCha20-Poly1305, replay \
            windows, rekeys) and the reliable messenger send COUNT messages each to the other \
            over a link that loses --loss of datagrams and delays each by 10 ms plus up to \
            --jitter (reordering them). Every 100th message is 20 kB (several fragments). \
            Exits 1 if any message is missing, duplicated, out of order or corrupted.

            Example:
              meshwork sim messages --count 10000 --loss 0.1 --seed 3
            """
    )

    @Option(name: .long, help: "Messages each node sends.") var count = 10_000
    @Option(name: .long, help: ArgumentHelp("Probability that a datagram is lost, 0 to 0.5.", valueName: "p")) var loss = 0.1
    @Option(name: .long, help: ArgumentHelp("Extra delay, uniform from 0 to this (reorders datagrams).", valueName: "duration")) var jitter = "20ms"
    @Option(name: .long, help: "Seed of every random choice in the run.") var seed: UInt64 = 1
    @Flag(name: .long, help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard (1...1_000_000).contains(count) else { throw ValidationError("--count: use 1 to 1000000") }
        guard loss >= 0, loss <= 0.5 else { throw ValidationError("--loss: \(loss) is out of range: use a probability from 0 to 0.5, e.g. 0.1") }
        guard jitterMilliseconds != nil else { throw ValidationError("--jitter: '\(jitter)' is not a duration in milliseconds, e.g. 20ms") }
    }

    var jitterMilliseconds: Int64? {
        guard jitter.hasSuffix("ms"), let v = Int64(jitter.dropLast(2)), v >= 0, v <= 10_000 else { return nil }
        return v
    }

    func run() throws {
        var s = MessageScenario()
        s.count = count
        s.loss = loss
        s.seed = seed
        s.jitter = .milliseconds(jitterMilliseconds!)
        let clock = ContinuousClock()
        let start = clock.now
        let r = s.run()
        let wall = clock.now - start
        if json {
            try printJSON(r)
        } else {
            print("Message simulation: 2 nodes, \(count) messages each way, loss \(loss), jitter \(jitter), seed \(seed)")
            printFields([
                ("Delivered", "\(r.delivered) of \(r.sent) (\(r.acknowledged) acknowledged, \(r.failed) failed)"),
                ("In order", r.inOrder ? "yes" : "NO"),
                ("Duplicates", "\(r.duplicates)"),
                ("Missing", "\(r.missing)"),
                ("Corrupted", "\(r.corrupted)"),
                ("Datagrams", "\(r.datagrams) sent, \(r.datagramsLost) lost"),
                ("Retransmits", "\(r.retransmits)"),
                ("Handshakes", "\(r.handshakes) (rekeys included)"),
                ("Simulated", String(format: "%.1fs", r.simulatedSeconds)),
                ("Wall time", "\(wall)"),
            ])
        }
        if !r.ok { throw ExitCode(1) }
    }
}
