import ArgumentParser
import Foundation
import MeshCore
import MeshCrypto
import MeshDaemon
import MeshPool

struct Pool: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operate on the address pool by hand.",
        discussion: """
            Meshwork reclaims the space of a node gone longer than the mesh's reclaim time by \
            itself, once members holding more than half the pool agree. These commands are \
            for when that cannot happen (a mesh that lost more than half its pool's holders), \
            and need the mesh's admin key, made by `meshwork mesh create`.
            """,
        subcommands: [Reclaim.self]
    )

    struct Reclaim: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take over a departed node's addresses and space now, without the majority's votes (unsafe; needs the admin key).",
            discussion: """
                The running node (--state) signs a reclaim of everything NODE holds (its \
                address and its free space) for itself, and spreads it. NODE is a name, a \
                node ID or a prefix of one (at least 4 hex digits).

                Every node accepts such a reclaim only with the signature of the mesh's admin \
                key (--admin-key: the file `meshwork mesh create` wrote; the token names its \
                public half). A member without it cannot force anything. The key signs here, \
                in this command; it never reaches the daemon.

                UNSAFE while NODE might still be alive somewhere (behind a partition): it and \
                the nodes it granted addresses to would then share addresses with this node's \
                until they renumber. Meshwork does this safely by itself after the reclaim \
                time (`meshwork mesh inspect` shows it) when members holding more than half \
                the pool are alive; use this only when they are not, e.g. in a two-node mesh \
                whose other node is gone for good. Refused while membership says NODE is alive.
                JSON: {nodeId, fingerprint, ranges, forced}.

                Example:
                  meshwork pool reclaim laptop2 --force --admin-key lab.admin.key
                """
        )

        @Argument(help: ArgumentHelp("The departed node: name, node ID or ID prefix.", valueName: "node"))
        var node: String
        @Flag(name: .long, help: "Confirm that NODE is gone for good (required: this bypasses the majority's votes).")
        var force = false
        @Option(name: .long, help: ArgumentHelp("The mesh's admin key (written by `meshwork mesh create`).", valueName: "file"))
        var adminKey: String?
        @OptionGroup var options: StateOption
        @Flag(name: .long, help: "Print JSON.") var json = false

        func validate() throws {
            guard force else {
                throw ValidationError("""
                    reclaiming by hand is unsafe while '\(node)' might be alive; Meshwork reclaims it by itself \
                    after the mesh's reclaim time once members holding most of the pool agree. \
                    If '\(node)' is gone for good, add --force.
                    """)
            }
            guard adminKey != nil else {
                throw ValidationError("""
                    --force needs --admin-key FILE: the mesh's admin key, which `meshwork mesh create` wrote \
                    (e.g. lab.admin.key). Only its signature makes a forced reclaim valid.
                    """)
            }
        }

        func run() throws {
            let path = adminKey ?? ""
            let admin: NodeIdentity
            do { admin = try KeyStore.loadIdentity(at: path) } catch { throw CLIError("--admin-key: \(error.description)") }
            let planData: Data
            do { planData = try ControlClient.request("reclaim-plan", target: node, stateDirectory: options.directory) } catch { throw CLIError("\(error)") }
            let plan = try JSONDecoder().decode(ControlProtocol.ReclaimPlan.self, from: planData)
            guard plan.admin == admin.nodeID.hex else {
                let named = plan.admin.isEmpty ? "none" : String(plan.admin.prefix(16))
                throw CLIError("\(path) is not this mesh's admin key (the token names \(named); this key is \(admin.nodeID.fingerprint))")
            }
            let signer = Ed25519RecordAuthenticator(identity: admin)
            var auths: [ControlProtocol.Authorization] = []
            for h in plan.holdings {
                guard let holding = Hex.decode(h.holding).flatMap({ Bytes32($0) }), let successor = NodeID(hex: h.successor) else {
                    throw CLIError("the node sent a malformed reclaim plan")
                }
                let v = ForcedHolding(holding: holding, cutoff: h.cutoff, successor: successor).authorize(with: signer, adminID: admin.nodeID)
                auths.append(.init(holding: h.holding, cutoff: h.cutoff, successor: h.successor, signer: admin.nodeID.hex, signature: Hex.encode(v.signature)))
            }
            let data: Data
            do {
                data = try ControlClient.request(ControlProtocol.Request(command: "reclaim", target: plan.nodeId, authorizations: auths),
                                                 stateDirectory: options.directory)
            } catch { throw CLIError("\(error)") }
            if json {
                FileHandle.standardOutput.write(data)
                return
            }
            let r = try JSONDecoder().decode(ControlProtocol.Reclaimed.self, from: data)
            print("Took over from \(r.fingerprint): \(r.ranges.joined(separator: ", ")).")
        }
    }
}
