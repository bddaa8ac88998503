import MeshCore
import MeshGossip

/// The `meshwork sim gossip` scenario: a mesh of N nodes boots by real joins, settles,
/// then for `duration` of virtual time sees a steady trickle of new joins and crashes,
/// each measured until every running node knows of it.
public struct GossipScenario: Sendable {
    public var nodes = 100
    public var loss = 0.0
    public var seed: UInt64 = 1
    public var duration = Span.seconds(600)
    public var settings = GossipSettings.lan
    public var latency = Span.milliseconds(5)
    public var jitter = Span.milliseconds(5)
    /// Boot the mesh by real joins (slow at large N: every join is news to every node)
    /// rather than starting from a settled mesh.
    public var bootByJoining = false

    public init() {}

    public struct Distribution: Codable, Sendable, Equatable {
        public var count: Int
        public var unfinished: Int
        public var p50: Double
        public var p99: Double
        public var max: Double

        init(_ samples: [Double], unfinished: Int) {
            let s = samples.sorted()
            count = s.count
            self.unfinished = unfinished
            func pct(_ p: Double) -> Double {
                guard !s.isEmpty else { return 0 }
                return s[Swift.min(s.count - 1, Int((p * Double(s.count)).rounded(.up)) - 1)]
            }
            p50 = pct(0.50)
            p99 = pct(0.99)
            self.max = s.last ?? 0
        }
    }

    public struct Report: Codable, Sendable {
        public var nodes: Int
        public var loss: Double
        public var seed: UInt64
        public var durationSeconds: Double
        public var bootstrapSeconds: Double
        /// Seconds from a node's start until every running node knows it alive.
        public var joinKnownByAll: Distribution
        /// Seconds from a crash until every running node has declared it dead.
        public var crashDeclaredByAll: Distribution
        /// Suspicions of members that were running, counted once per episode.
        public var falseSuspicions: Int
        /// Deaths declared of members that were running, counted once per episode.
        public var falseDeaths: Int
        public var messagesPerNodePerSecond: Double
        public var bytesPerNodePerSecond: Double
        /// The same two figures over the last 15% of the window, when no joins or crashes are injected.
        public var quietMessagesPerNodePerSecond: Double
        public var quietBytesPerNodePerSecond: Double
        public var datagramsLostFraction: Double
        public var eventsProcessed: Int
    }

    public func run(progress: ((String) -> Void)? = nil) -> Report {
        let sim = Simulation(seed: seed, settings: settings, network: .init(latency: latency, jitter: jitter, loss: loss))
        var rng = SeededRandom(seed: seed ^ 0xabcdef)
        let measured = Swift.max(3, Swift.min(50, nodes / 20))
        let boot = Swift.max(2, nodes - measured)

        // Who is watched, and how far their news has spread.
        var joinStart: [Int: Instant] = [:], joinSeen: [Int: Set<Int>] = [:], joinTimes: [Double] = []
        var crashStart: [Int: Instant] = [:], crashSeen: [Int: Set<Int>] = [:], crashTimes: [Double] = []
        var suspectEpisode = Set<Int>(), deathEpisode = Set<Int>()
        var falseSuspicions = 0, falseDeaths = 0
        var measuring = false
        var index: [NodeID: Int] = [:]

        sim.observer = { now, observer, event in
            switch event {
            case .joined(let id):
                guard let x = index[id], let t0 = joinStart[x] else { return }
                joinSeen[x, default: []].insert(observer)
                if joinSeen[x]!.count >= sim.upCount - 1 {
                    joinTimes.append((now - t0).seconds)
                    joinStart[x] = nil
                }
            case .died(let id), .left(let id):
                guard let x = index[id] else { return }
                if let t0 = crashStart[x] {
                    crashSeen[x, default: []].insert(observer)
                    if crashSeen[x]!.count >= sim.upCount {
                        crashTimes.append((now - t0).seconds)
                        crashStart[x] = nil
                    }
                } else if measuring, sim.nodes[x].isUp, deathEpisode.insert(x).inserted {
                    falseDeaths += 1
                }
            case .suspected(let id):
                guard measuring, let x = index[id], sim.nodes[x].isUp else { return }
                if suspectEpisode.insert(x).inserted { falseSuspicions += 1 }
            case .refuted:
                suspectEpisode.remove(observer)
                deathEpisode.remove(observer)
            default:
                break
            }
        }

        if bootByJoining {
            // Boot: real joins, each through a random earlier node, spread over time.
            let bootSpan = Span.seconds(Swift.max(2, Double(boot) / 100))
            for i in 0..<boot {
                let at = Instant.zero + bootSpan * (Double(i) / Double(boot))
                sim.schedule(at: at) {
                    let seeds = i == 0 ? [] : [Int(rng.next() % UInt64(i))]
                    let x = sim.addNode(joinVia: seeds)
                    index[sim.nodes[x].id] = x
                }
            }
            sim.run(until: .zero + bootSpan)
            progress?("booted \(boot) nodes by joining in \(bootSpan) of simulated time; waiting for every node to know every other")
        } else {
            sim.addSettledNodes(boot)
            for x in 0..<boot { index[sim.nodes[x].id] = x }
            sim.run(for: .seconds(5))
            progress?("started a settled mesh of \(boot) nodes")
        }
        _ = sim.run(until: { sim.allKnown() }, within: .seconds(120), step: .seconds(1))
        let bootstrapSeconds = sim.now.nanoseconds > 0 ? (sim.now - .zero).seconds : 0
        progress?("mesh of \(boot) settled after \(Span.seconds(bootstrapSeconds)); measuring for \(duration)")

        // Measure: joins and crashes spread over the first 80% of the window.
        measuring = true
        let t0 = sim.now
        let (d0, b0) = (sim.datagramsSent, sim.bytesSent)
        var upSeconds = 0.0
        for k in 0..<measured {
            let joinAt = t0 + duration * (0.8 * (Double(2 * k) + 0.5) / Double(2 * measured))
            let crashAt = t0 + duration * (0.8 * (Double(2 * k + 1) + 0.5) / Double(2 * measured))
            sim.schedule(at: joinAt) {
                let up = sim.upNodes
                let x = sim.addNode(joinVia: [up[Int(rng.next() % UInt64(up.count))]])
                index[sim.nodes[x].id] = x
                joinStart[x] = sim.now
            }
            sim.schedule(at: crashAt) {
                let up = sim.upNodes.filter { joinStart[$0] == nil }
                guard up.count > 2 else { return }
                let x = up[Int(rng.next() % UInt64(up.count))]
                sim.crash(x)
                crashStart[x] = sim.now
            }
        }
        let step = duration * 0.05
        var t = t0
        var quiet: (d: Int, b: Int, upSeconds: Double)?
        while t < t0 + duration {
            let next = Swift.min(t0 + duration, t + step)
            sim.run(until: next)
            upSeconds += Double(sim.upCount) * (next - t).seconds
            if quiet != nil { quiet!.upSeconds += Double(sim.upCount) * (next - t).seconds }
            t = next
            // Injected events end at 80% of the window; measure the quiet tail from 85%.
            if quiet == nil, t >= t0 + duration * 0.85 { quiet = (sim.datagramsSent, sim.bytesSent, 0) }
            progress?("simulated \(Int((t - t0).seconds))s of \(Int(duration.seconds))s")
        }
        let q = quiet ?? (sim.datagramsSent, sim.bytesSent, 0)
        let sent = sim.datagramsSent - d0, bytes = sim.bytesSent - b0
        return Report(
            nodes: nodes, loss: loss, seed: seed, durationSeconds: duration.seconds, bootstrapSeconds: bootstrapSeconds,
            joinKnownByAll: Distribution(joinTimes, unfinished: joinStart.count),
            crashDeclaredByAll: Distribution(crashTimes, unfinished: crashStart.count),
            falseSuspicions: falseSuspicions, falseDeaths: falseDeaths,
            messagesPerNodePerSecond: Double(sent) / upSeconds, bytesPerNodePerSecond: Double(bytes) / upSeconds,
            quietMessagesPerNodePerSecond: q.upSeconds > 0 ? Double(sim.datagramsSent - q.d) / q.upSeconds : 0,
            quietBytesPerNodePerSecond: q.upSeconds > 0 ? Double(sim.bytesSent - q.b) / q.upSeconds : 0,
            datagramsLostFraction: sim.datagramsSent == 0 ? 0 : Double(sim.datagramsLost) / Double(sim.datagramsSent),
            eventsProcessed: sim.eventsProcessed)
    }
}
