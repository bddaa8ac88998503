import ArgumentParser
import MeshCrypto
import MeshDaemon

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a new node identity (an Ed25519 key pair).",
        discussion: """
            The node ID is the public key; people see it as a 16-digit fingerprint. The key \
            file is written with mode 0600 and holds the secret: anyone who has it can act \
            as this node. Back it up with the rest of the state directory.

            By default the key goes to the state directory (\(StatePaths.defaultDirectory())/identity.key; \
            set MESHWORK_STATE to change it), where 'meshwork mesh create' and 'meshwork up' look for it.

            Examples:
              meshwork keygen
              meshwork keygen --out ./node1.key --json
            """
    )

    @Option(name: .long, help: ArgumentHelp("Where to write the key.", valueName: "file"))
    var out: String?

    @Flag(name: .long, help: "Replace an existing key file (its old identity is lost unless backed up).")
    var force = false

    @Flag(name: .long, help: "Print JSON: {\"nodeId\", \"fingerprint\", \"path\"}.")
    var json = false

    struct Output: Encodable {
        let nodeId: String
        let fingerprint: String
        let path: String
    }

    func run() throws {
        let path = out ?? StatePaths().identityKey
        if !force, AtomicFile.exists(path) {
            throw CLIError("\(path) already exists; pass --force to replace it (its identity is lost unless backed up), or choose another --out")
        }
        var rng = SodiumRandom()
        let identity = NodeIdentity.generate(using: &rng)
        do {
            try KeyStore.saveIdentity(identity, at: path, overwrite: force)
        } catch {
            throw CLIError(error.description)
        }
        let result = Output(nodeId: identity.nodeID.hex, fingerprint: identity.nodeID.fingerprint, path: path)
        if json {
            try printJSON(result)
        } else {
            print("Wrote a new node identity to \(path) (mode 0600).")
            printFields([("Node ID", result.nodeId), ("Fingerprint", result.fingerprint)])
            print("Keep this file secret and back it up: it is this node's identity.")
        }
    }
}
