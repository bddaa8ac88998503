import Foundation
import MeshCore
import MeshCrypto
import MeshDaemon
import MeshNode
import MeshPool
import MeshWire
import Testing

/// The allocator's promises with real `meshwork up` processes on 127.0.0.1: the death of
/// the largest owner of a small mesh, the genesis node losing its pool.json, and a member
/// forging a forced reclaim on the wire.
@Suite(.serialized) struct AllocatorPromiseTests {
    typealias Daemon = MembershipIntegrationTests.Daemon
    let reclaimTests = ReclaimIntegrationTests()

    func status(_ cli: CLI, _ d: Daemon) -> [String: Any]? { reclaimTests.status(cli, d) }

    func address(_ cli: CLI, _ d: Daemon) -> String? { status(cli, d)?["address"] as? String }

    /// Addresses held (space and leases) by fingerprint, as node `d` folds the pool.
    func shares(_ cli: CLI, _ d: Daemon) -> [String: UInt64] {
        guard let r = try? cli.run(["leases", "--state", d.state, "--json"]), r.status == 0, let j = try? cli.json(r.stdout) else { return [:] }
        var by: [String: UInt64] = [:]
        for l in j["leases"] as? [[String: Any]] ?? [] { if let f = l["holderFingerprint"] as? String { by[f, default: 0] += 1 } }
        for o in j["owners"] as? [[String: Any]] ?? [] {
            if let f = o["ownerFingerprint"] as? String, let n = o["size"] as? Int { by[f, default: 0] += UInt64(n) }
        }
        return by
    }

    /// As reported: a 3-node mesh on a /24 whose largest owner is killed; a fourth node
    /// started after the survivors would once have fenced gets an address within the
    /// reclaim time plus 10 s (it takes about a second: the survivors hold most of the pool).
    @Test func killTheLargestOwnerOfThreeThenJoinAFourth() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        daemons = try reclaimTests.startMesh(cli, nodes: 3, reclaim: "20s")
        // Balanced as the design promises, in every view: nobody above the fair share plus
        // the slack (pool/3 + pool/9 = 112 of 254), so any two hold a quorum. Only "at most
        // half" is not enough: right after the second node's share, two nodes hold 127 each
        // before the third's donations arrive, and killing the one with the pool's first
        // address then leaves the survivors exactly half without the tie-break: fenced until
        // the reclaim, whose timing rides on SWIM's under load (CI failed so, 2026-11-29).
        func balanced(_ by: [String: UInt64]) -> Bool {
            let total = by.values.reduce(0, +)
            return by.count == 3 && total > 0 && by.values.max()! <= total / 3 + Swift.max(1, total / 9)
        }
        #expect(CLI.eventually(20, every: 0.25) { daemons.allSatisfy { balanced(shares(cli, $0)) } },
                "shares never balanced: \(daemons.map { shares(cli, $0) })")
        let held = shares(cli, daemons[1])
        let fps = daemons.map { status(cli, $0)?["fingerprint"] as? String ?? "" }
        let victim = (0..<3).max { held[fps[$0], default: 0] < held[fps[$1], default: 0] }!
        daemons[victim].kill(SIGKILL)
        daemons[victim].process.waitUntilExit()
        let killed = Date()
        let survivor = daemons[(victim + 1) % 3]
        let listen = try #require(status(cli, survivor)?["listen"] as? String)
        // Past half the reclaim time, where the old fence stopped the survivors.
        Thread.sleep(forTimeInterval: 12)
        let fourth = try Daemon(cli: cli, name: "r4", mesh: cli.path("r.mesh"), peers: [listen])
        daemons.append(fourth)
        let got = CLI.eventually(30 - Date().timeIntervalSince(killed), every: 0.25) { address(cli, fourth) != nil }
        #expect(got, """
            the fourth node has no address \(Date().timeIntervalSince(killed)) s after the largest owner died \
            (shares at the kill: \(held)); the fourth's log:
            \(fourth.logText)
            the survivors' logs:
            \(daemons.prefix(3).filter { $0.process.isRunning }.map(\.logText).joined(separator: "\n---\n"))
            """)
        let addresses = daemons.filter { $0.process.isRunning }.compactMap { address(cli, $0) }
        #expect(Set(addresses).count == addresses.count, "duplicate addresses: \(addresses)")
    }

    /// As reported: the genesis is killed, its pool state moved aside (as the corrupt-file
    /// error tells operators to do), and it is started again; two new nodes join through
    /// it. Nobody loses an address, and no two hold one.
    @Test func theGenesisRestartedWithoutItsPoolFile() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        daemons = try reclaimTests.startMesh(cli, nodes: 3, reclaim: "30s")
        Thread.sleep(forTimeInterval: 3)
        let before = daemons.map { address(cli, $0) }
        let second = try #require(status(cli, daemons[1])?["listen"] as? String)
        daemons[0].kill(SIGKILL)
        daemons[0].process.waitUntilExit()
        // Its pool state: the snapshot (if one was written yet) and the log after it.
        let files = ["/pool.json", "/pool.log"].map { daemons[0].state + $0 }.filter { FileManager.default.fileExists(atPath: $0) }
        #expect(files.contains { $0.hasSuffix("pool.log") })
        for f in files { try FileManager.default.moveItem(atPath: f, toPath: f + ".aside") }
        let genesis = try Daemon(cli: cli, name: "r1", mesh: cli.path("r.mesh"), peers: [second])
        daemons[0] = genesis
        let glisten = try #require(CLI.eventually(10, every: 0.1) { status(cli, genesis)?["listen"] is String } ? status(cli, genesis)?["listen"] as? String : nil)
        let newcomers = [try Daemon(cli: cli, name: "r4", mesh: cli.path("r.mesh"), peers: [glisten]),
                         try Daemon(cli: cli, name: "r5", mesh: cli.path("r.mesh"), peers: [glisten])]
        daemons += newcomers
        #expect(CLI.eventually(30, every: 0.25) { daemons.allSatisfy { address(cli, $0) != nil } },
                "not all bound: \(daemons.map { address(cli, $0) ?? "-" })\n\(genesis.logText)")
        Thread.sleep(forTimeInterval: 5)
        let after = daemons.map { address(cli, $0) }
        #expect(Array(after.prefix(3)) == before, "a node lost its address: \(before) → \(after)")
        let all = after.compactMap { $0 }
        #expect(Set(all).count == all.count, "duplicate addresses: \(all)")
        let conflicts = daemons.reduce(0) { n, d in n + (((status(cli, d)?["counters"] as? [String: Any])?["poolConflicts"] as? Int) ?? 0) }
        #expect(conflicts == 0, "conflicts were counted: the genesis granted what the mesh had")
    }

    /// History compaction with real processes: members join and leave (`meshwork leave`,
    /// RELEASE) until checkpoints fold the history (`--checkpoint-every 32`). A member
    /// killed with SIGKILL starts again from its pool.json (the checkpoint and the grants
    /// after it) with its address; a member whose state directory is put back from a backup
    /// taken before any checkpoint catches up (it takes the mesh's checkpoint on trust: it
    /// lacks grants the others dropped) and gets an address; no two nodes share one.
    @Test func membersRestartAfterCheckpointsFromTheirFileAndFromAnOldBackup() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        let extra = ["--checkpoint-every", "32"]
        daemons = try reclaimTests.startMesh(cli, nodes: 3, reclaim: "60s", extra: extra)
        func counter(_ d: Daemon, _ name: String) -> Int? { (status(cli, d)?["counters"] as? [String: Any])?[name] as? Int }
        // A backup of r3's state (its regular files: not the control socket), before any checkpoint.
        let fm = FileManager.default
        func copyFiles(_ from: String, _ to: String) throws {
            try fm.createDirectory(atPath: to, withIntermediateDirectories: true)
            for f in try fm.contentsOfDirectory(atPath: from) {
                let attrs = try fm.attributesOfItem(atPath: from + "/" + f)
                if attrs[.type] as? FileAttributeType == .typeRegular { try fm.copyItem(atPath: from + "/" + f, toPath: to + "/" + f) }
            }
        }
        let backup = cli.path("backup-r3")
        try copyFiles(daemons[2].state, backup)
        let listen = try #require(status(cli, daemons[0])?["listen"] as? String)
        var cycles = 0
        // Join/leave cycles until every member is on a checkpoint (each makes a lease, the
        // space balanced to it, and what it gives back).
        let onCheckpoints = CLI.eventually(150, every: 0.5) {
            if daemons.allSatisfy({ (counter($0, "poolCheckpoint") ?? 0) >= 2 }) { return true }
            cycles += 1
            guard let j = try? Daemon(cli: cli, name: "c\(cycles)", mesh: cli.path("r.mesh"), peers: [listen], extra: extra) else { return false }
            defer { if j.process.isRunning { j.kill(SIGKILL) } }
            guard CLI.eventually(20, every: 0.1, { address(cli, j) != nil }) else { return false }
            _ = try? cli.run(["leave", "--state", j.state])
            j.process.waitUntilExit()
            return false
        }
        #expect(onCheckpoints, "after \(cycles) cycles the members are on checkpoints \(daemons.map { counter($0, "poolCheckpoint") ?? -1 })")
        let number = counter(daemons[1], "poolCheckpoint") ?? 0
        let before = daemons.map { address(cli, $0) }
        // r2: SIGKILL, then started again on its own state.
        daemons[1].kill(SIGKILL)
        daemons[1].process.waitUntilExit()
        let file = try String(contentsOfFile: daemons[1].state + "/pool.json", encoding: .utf8)
        #expect(file.contains("\"checkpoint\""), "r2's pool.json holds no checkpoint")
        daemons[1] = try Daemon(cli: cli, name: "r2", mesh: cli.path("r.mesh"), peers: [listen], extra: extra)
        #expect(CLI.eventually(10, every: 0.1) { (counter(daemons[1], "poolCheckpoint") ?? 0) >= number },
                "r2 did not start on its checkpoint \(number): \(daemons[1].logText)")
        #expect(CLI.eventually(20, every: 0.25) { address(cli, daemons[1]) == before[1] }, "r2 came back without its address \(before[1] ?? "-")")
        #expect(counter(daemons[1], "poolCheckpointsTrusted") == 0, "r2 took a checkpoint on trust though its file held it")
        // r3: SIGKILL, its state put back from the backup taken before any checkpoint.
        daemons[2].kill(SIGKILL)
        daemons[2].process.waitUntilExit()
        try fm.removeItem(atPath: daemons[2].state)
        try copyFiles(backup, daemons[2].state)
        daemons[2] = try Daemon(cli: cli, name: "r3", mesh: cli.path("r.mesh"), peers: [listen], extra: extra)
        #expect(CLI.eventually(30, every: 0.25) { address(cli, daemons[2]) != nil && (counter(daemons[2], "poolCheckpoint") ?? 0) >= number },
                "r3 restored from its backup: no address, or not on the mesh's checkpoint: \(daemons[2].logText)")
        #expect((counter(daemons[2], "poolCheckpointsTrusted") ?? 0) >= 1, "r3 lacked the grants inside the checkpoint, yet took none on trust")
        // Two more joiners; every address distinct, nobody lost one.
        let late = [try Daemon(cli: cli, name: "l1", mesh: cli.path("r.mesh"), peers: [listen], extra: extra),
                    try Daemon(cli: cli, name: "l2", mesh: cli.path("r.mesh"), peers: [listen], extra: extra)]
        daemons += late
        #expect(CLI.eventually(30, every: 0.25) { daemons.allSatisfy { address(cli, $0) != nil } },
                "not all bound: \(daemons.map { address(cli, $0) ?? "-" })")
        Thread.sleep(forTimeInterval: 3)
        let after = daemons.map { address(cli, $0) }
        #expect(Array(after.prefix(2)) == Array(before.prefix(2)), "r1 or r2 lost its address: \(before) → \(after)")
        let all = after.compactMap { $0 }
        #expect(Set(all).count == all.count, "duplicate addresses: \(all)")
        let conflicts = daemons.reduce(0) { n, d in n + (counter(d, "poolConflicts") ?? 0) }
        #expect(conflicts == 0, "conflicts were counted")
    }

    /// As reported: a member signs a forced reclaim of the genesis grant with its own key,
    /// seals it with the mesh key and sends it to every node. Every node refuses it and
    /// counts it; nobody loses an address; a later joiner still gets one.
    @Test func aForgedForcedReclaimIsRefusedEverywhere() throws {
        let cli = CLI()
        var daemons: [Daemon] = []
        defer {
            for d in daemons where d.process.isRunning { d.kill(SIGKILL) }
            cli.cleanup()
        }
        daemons = try reclaimTests.startMesh(cli, nodes: 3, reclaim: "30s")
        let before = daemons.map { address(cli, $0) }
        let token = try KeyStore.loadToken(cli.path("r.mesh"))
        let genesisKey = try KeyStore.loadIdentity(at: cli.path("state-r1/identity.key"))
        let member = try KeyStore.loadIdentity(at: cli.path("state-r2/identity.key"))
        let pool = AddressRange(token.pool.network.value + 1, token.pool.network.value + UInt32(token.pool.size) - 2)
        var genesis = Grant(grantor: genesisKey.nodeID, seq: 0, parent: .zero, range: pool, grantee: genesisKey.nodeID, kind: .space)
        genesis.sign(with: Ed25519RecordAuthenticator(identity: genesisKey))
        var forged = Grant(grantor: member.nodeID, seq: 1000, parent: genesis.ref, range: pool, grantee: member.nodeID, kind: .reclaim,
                           cutoff: 0, forced: true, votes: [])
        forged.sign(with: Ed25519RecordAuthenticator(identity: member))
        // And one "authorised" by the member's own key posing as the admin.
        let fake = ForcedHolding(holding: genesis.ref, cutoff: 0, successor: member.nodeID)
            .authorize(with: Ed25519RecordAuthenticator(identity: member), adminID: member.nodeID)
        var posing = forged
        posing.seq = 1001
        posing.votes = [fake]
        posing.sign(with: Ed25519RecordAuthenticator(identity: member))
        let header = PacketHeader(type: .pool).wireBytes
        var sealer = GossipSealer(secret: token.secret)
        var push = PoolPacket(sender: member.nodeID, message: .grants([forged, posing]))
        push.signature = Ed25519RecordAuthenticator(identity: member).sign(push.signedBytes)
        let datagram = header + sealer.seal(push.wireBytes, header: header)
        for d in daemons {
            let listen = try #require(status(cli, d)?["listen"] as? String)
            try sendUDP(datagram, to: listen)
        }
        // (The member's own node drops a pool packet in its own name unread.)
        #expect(CLI.eventually(10, every: 0.25) {
            [daemons[0], daemons[2]].allSatisfy { (((status(cli, $0)?["counters"] as? [String: Any])?["poolRejectedReclaims"] as? Int) ?? 0) >= 1 }
        }, "not every node counted the forged reclaims: \(daemons.map { status(cli, $0)?["counters"] ?? "-" })")
        // As reported: DISCOVER and REQUEST pairs under made-up node IDs (each signed by its
        // own throwaway key), and in a member's name signed by another key. None is served.
        let holdersBefore = Set(shares(cli, daemons[0]).keys)
        var rng = SodiumRandom()
        for k in 0..<30 {
            let fake = NodeIdentity.generate(using: &rng)
            let claimed = k % 2 == 0 ? fake.nodeID : member.nodeID
            for m in [PoolMessage.discover(xid: UInt32(k), requested: nil), .request(xid: UInt32(k), address: pool.first + UInt32(k))] {
                var p = PoolPacket(sender: claimed, message: m)
                p.signature = Ed25519RecordAuthenticator(identity: fake).sign(p.signedBytes)
                let d = header + sealer.seal(p.wireBytes, header: header)
                for n in daemons { try sendUDP(d, to: try #require(status(cli, n)?["listen"] as? String)) }
            }
        }
        #expect(CLI.eventually(10, every: 0.25) {
            // (The member's own node drops packets in its own name unread.)
            daemons.enumerated().allSatisfy { i, d in
                let c = status(cli, d)?["counters"] as? [String: Any]
                return (c?["poolRefusedNonMembers"] as? Int ?? 0) >= 1 && (i == 1 || (c?["poolBadPacketSignatures"] as? Int ?? 0) >= 1)
            }
        }, "requests under made-up IDs were not all refused and counted")
        Thread.sleep(forTimeInterval: 3)
        #expect(Set(shares(cli, daemons[0]).keys) == holdersBefore, "a made-up ID was granted space or a lease")
        #expect(daemons.map { address(cli, $0) } == before, "a node lost its address to a forged reclaim")
        let listen = try #require(status(cli, daemons[1])?["listen"] as? String)
        let late = try Daemon(cli: cli, name: "r4", mesh: cli.path("r.mesh"), peers: [listen])
        daemons.append(late)
        #expect(CLI.eventually(20, every: 0.25) { address(cli, late) != nil }, "a later joiner got no address")
        for d in daemons { #expect((((status(cli, d)?["counters"] as? [String: Any])?["poolForcedReclaims"] as? Int) ?? 0) == 0) }
    }

    /// One datagram from a fresh socket to "127.0.0.1:PORT".
    func sendUDP(_ bytes: [UInt8], to hostPort: String) throws {
        let port = UInt16(hostPort.split(separator: ":").last.flatMap { UInt16($0) } ?? 0)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let sent = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &sin) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        #expect(sent == bytes.count)
    }
}
