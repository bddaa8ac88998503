import ArgumentParser
import Foundation
import MeshDaemon

struct Pool: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operate on the address pool by hand.",
        discussion: """
            Meshwork reclaims the space of a node gone longer than the mesh's reclaim time by \
            itself, once members holding more than half the pool agree. These commands are \
            for when that cannot happen (a mesh too small to have such a majority).
            """,
        subcommands: [Reclaim.self]
    )

    struct Reclaim: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take over a departed node's addresses and space now, without the majority's votes (unsafe).",
            discussion: """
                The running node (--state) signs a reclaim of everything NODE holds (its \
                address and its free space) for itself, and spreads it. NODE is a name, a \
                node ID or a prefix of one (at least 4 hex digits).

                UNSAFE while NODE might still be alive somewhere (behind a partition): it and \
                the nodes it granted addresses to would then share addresses with this node's \
                until they renumber. Meshwork does this safely by itself after the reclaim \
                time (`meshwork mesh inspect` shows it) when members holding more than half \
                the pool are alive; use this only when they are not, e.g. in a two-node mesh \
                whose other node is gone for good. Refused while membership says NODE is alive.
                JSON: {nodeId, fingerprint, ranges, forced}.
                """
        )

        @Argument(help: ArgumentHelp("The departed node: name, node ID or ID prefix.", valueName: "node"))
        var node: String
        @Flag(name: .long, help: "Confirm that NODE is gone for good (required: this bypasses the majority's votes).")
        var force = false
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
        }

        func run() throws {
            guard let r = try options.query("reclaim", target: node, json: json, as: ControlProtocol.Reclaimed.self) else { return }
            print("Took over from \(r.fingerprint): \(r.ranges.joined(separator: ", ")).")
        }
    }
}
