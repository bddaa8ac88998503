import ArgumentParser
import MeshCrypto
import MeshDaemon
import MeshWire

@main
struct Meshwork: ParsableCommand {
    static let version = Daemon.version

    static let configuration = CommandConfiguration(
        commandName: "meshwork",
        abstract: "A serverless, peer-to-peer encrypted mesh overlay.",
        discussion: """
            Peers that hold the same mesh token find each other by gossip, share one overlay \
            address pool with no server, and talk over end-to-end encrypted sessions.

            Try it on one machine, no root needed:
              meshwork demo

            Across hosts (as root, for the TUN device; 'up --no-tun' runs without one):
              sudo meshwork mesh create --name lab --pool 100.80.0.0/16 --out lab.mesh
              sudo meshwork up --mesh lab.mesh                        # first host
              sudo meshwork up --mesh lab.mesh --peer host1:51830     # every other host
              sudo meshwork status; sudo meshwork peers; sudo meshwork leases
            """,
        version: "meshwork \(version)",
        subcommands: [Demo.self, Keygen.self, Mesh.self, Up.self, Status.self, Peers.self, Leases.self, Send.self, Listen.self, Ping.self, Leave.self, Pool.self, ConfigCommand.self, Sim.self, Bench.self, Version.self]
    )
}

/// A failure the user can act on: printed as "Error: <message>", exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version of meshwork, its wire protocol and libsodium.")

    @Flag(name: .long, help: "Print JSON: {\"version\", \"wireVersion\", \"libsodium\"}.")
    var json = false

    struct Output: Encodable {
        let version: String
        let wireVersion: Int
        let libsodium: String
    }

    func run() throws {
        let out = Output(version: Meshwork.version, wireVersion: Int(PacketHeader.currentVersion), libsodium: Sodium.version)
        if json {
            try printJSON(out)
        } else {
            print("meshwork \(out.version)")
            print("wire protocol \(out.wireVersion)")
            print("libsodium \(out.libsodium)")
        }
    }
}
