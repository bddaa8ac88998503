import ArgumentParser
import MeshCore
import MeshCrypto
import MeshDaemon

struct Mesh: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create and inspect mesh tokens.",
        discussion: """
            A mesh token is one line of text that holds everything a node needs to join: the \
            mesh name, the overlay address pool, lease and reclaim times, the 32-byte mesh \
            secret, the genesis node (which owns the pool at first) and optional bootstrap \
            peers. Whoever holds the token may join the mesh: share it like a password.
            """,
        subcommands: [Create.self, Inspect.self]
    )
}

extension Mesh {
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new mesh and print its token.",
            discussion: """
                This node (the identity in --key, made if absent) becomes the genesis node: it \
                owns the whole pool until it hands shares of it to the nodes that join.

                It also makes the mesh's admin key (--admin-key, default NAME.admin.key beside \
                --out, or in the current directory), whose public half the token names. Only \
                that key can force a reclaim (`meshwork pool reclaim --force`) when too few \
                members survive to reclaim by vote. Keep it offline, like a CA key: nodes do \
                not need it, and a member holding only the token can force nothing. \
                --no-admin-key makes a mesh without that break-glass.

                Without --out the token goes to standard output and notes to standard error, so \
                it can be redirected: meshwork mesh create --name lab --pool 100.80.0.0/16 > lab.mesh
                With --out the token file is written with mode 0600.

                The pool should be private-use space (100.64.0.0/10, 10.0.0.0/8, 172.16.0.0/12, \
                192.168.0.0/16) that the hosts do not already route; /8 to /28.

                Examples:
                  meshwork mesh create --name lab --pool 100.80.0.0/16 --out lab.mesh
                  meshwork mesh create --name lab --pool 100.80.0.0/16 --bootstrap host1.example:51830 --reclaim 12h
                """
        )

        @Option(name: .long, help: ArgumentHelp("The mesh name: 1-32 characters from A-Z a-z 0-9 . _ -", valueName: "name"))
        var name: String

        @Option(name: .long, help: ArgumentHelp("The overlay address pool, as a CIDR prefix from /8 to /28.", valueName: "cidr"))
        var pool: String

        @Option(name: .long, help: ArgumentHelp("This node's identity key (made if absent). Default: the state directory's identity.key.", valueName: "file"))
        var key: String?

        @Option(name: .long, help: ArgumentHelp("Write the token to this file (mode 0600) instead of standard output.", valueName: "file"))
        var out: String?

        @Flag(name: .long, help: "Replace an existing --out file.")
        var force = false

        @Option(name: .long, help: ArgumentHelp("Lease time, as DHCP's: a node renews its address by being a live member; gone this long, its address returns to the pool, and cut off from most of the pool for half of it, it stops using the address. Default: the reclaim time.", valueName: "duration"))
        var lease: String?

        @Option(name: .long, help: ArgumentHelp("How long a node must be confirmed dead before its addresses are reclaimed.", valueName: "duration"))
        var reclaim: String = DurationText.format(seconds: UInt64(MeshToken.defaultReclaimSeconds))

        @Option(name: .long, help: ArgumentHelp("A peer that joiners contact first (repeatable).", valueName: "host:port"))
        var bootstrap: [String] = []

        @Option(name: .long, help: ArgumentHelp("Write the new admin key here (mode 0600). Default: NAME.admin.key beside --out, or in the current directory.", valueName: "file"))
        var adminKey: String?

        @Flag(name: .long, help: "Make the mesh without an admin key: no forced reclaims, ever.")
        var noAdminKey = false

        @Flag(name: .long, help: "Print JSON describing the mesh (needs --out: the token itself is never printed as JSON).")
        var json = false

        /// Where the admin key goes, or nil for none.
        var adminKeyPath: String? {
            if noAdminKey { return nil }
            if let adminKey { return adminKey }
            let file = "\(name).admin.key"
            guard let out, let slash = out.lastIndex(of: "/") else { return file }
            return String(out[...slash]) + file
        }

        func validate() throws {
            if json && out == nil {
                throw ValidationError("--json needs --out FILE: the token holds the mesh secret, so it is written to a file and never printed in JSON")
            }
            if noAdminKey && adminKey != nil {
                throw ValidationError("--admin-key and --no-admin-key contradict each other: keep one")
            }
            _ = try parsed()
        }

        struct Parsed {
            let pool: IPv4Prefix
            let lease: UInt32
            let reclaim: UInt32
            let bootstrap: [HostPort]
        }

        func parsed() throws -> Parsed {
            let prefix: IPv4Prefix
            do { prefix = try IPv4Prefix(parsing: pool) } catch { throw ValidationError("--pool: \(error.description)") }
            if prefix.length > MeshToken.poolLengths.upperBound {
                throw ValidationError("--pool: \(MeshToken.TokenError.poolTooSmall(prefix).description)")
            }
            if prefix.length < MeshToken.poolLengths.lowerBound {
                throw ValidationError("--pool: \(MeshToken.TokenError.poolTooLarge(prefix).description)")
            }
            guard MeshToken.isValidName(name) else { throw ValidationError("--name: \(MeshToken.TokenError.badName(name).description)") }
            func timing(_ text: String, _ flag: String) throws -> UInt32 {
                let s: UInt64
                do { s = try DurationText.parseSeconds(text) } catch { throw ValidationError("--\(flag): \(error.description)") }
                guard s <= UInt64(UInt32.max), MeshToken.timingLimits.contains(UInt32(s)) else {
                    throw ValidationError("--\(flag): '\(text)' is out of range: use 1s to 365d")
                }
                return UInt32(s)
            }
            let r = try timing(reclaim, "reclaim")
            let l = try lease.map { try timing($0, "lease") } ?? r
            let peers = try bootstrap.map { (text: String) throws -> HostPort in
                do { return try HostPort(parsing: text) } catch let e as HostPort.ParseError { throw ValidationError("--bootstrap: \(e.description)") }
            }
            if peers.count > MeshToken.bootstrapLimit {
                throw ValidationError("--bootstrap: \(MeshToken.TokenError.tooManyBootstrap(peers.count).description)")
            }
            return Parsed(pool: prefix, lease: l, reclaim: r, bootstrap: peers)
        }

        func run() throws {
            let p = try parsed()
            if let out, !force, AtomicFile.exists(out) {
                throw CLIError("\(out) already exists; pass --force to replace it, or choose another --out")
            }
            let keyPath = key ?? StatePaths().identityKey
            let identity: NodeIdentity
            let created: Bool
            do { (identity, created) = try KeyStore.loadOrCreateIdentity(at: keyPath) } catch { throw CLIError(error.description) }

            var admin: NodeIdentity?
            if let path = adminKeyPath {
                if AtomicFile.exists(path) && !force {
                    throw CLIError("\(path) already exists (an admin key of another mesh?); pass --admin-key FILE to choose another, or --force to replace it")
                }
                var rng = SodiumRandom()
                let key = NodeIdentity.generate(using: &rng)
                do { try KeyStore.saveIdentity(key, at: path, overwrite: force) } catch { throw CLIError("--admin-key: \(error)") }
                admin = key
            }

            var rng = SodiumRandom()
            let token = try MeshToken(
                name: name, pool: p.pool, leaseSeconds: p.lease, reclaimSeconds: p.reclaim,
                secret: MeshSecret.generate(using: &rng), genesis: identity.nodeID, admin: admin?.nodeID, bootstrap: p.bootstrap)
            if let path = adminKeyPath, let admin {
                printErr("Wrote the mesh's admin key to \(path) (mode 0600, key \(admin.nodeID.fingerprint)): keep it offline; only it can force a reclaim.")
            }

            if created { printErr("Made a new node identity in \(keyPath) (node \(identity.nodeID.fingerprint)).") }
            if !p.pool.isPrivateUse {
                printErr("warning: \(p.pool) is not private-use address space; overlay addresses may shadow real hosts. Prefer 100.64.0.0/10 or RFC 1918 space.")
            }
            guard let out else {
                print(token.text)
                printErr("Created mesh '\(name)' (mesh ID \(token.meshID)), pool \(p.pool), genesis node \(identity.nodeID.fingerprint).")
                printErr("The token above holds the mesh secret: share it only with nodes that may join.")
                return
            }
            do {
                try AtomicFile.write(Array((token.text + "\n").utf8), to: out, mode: 0o600, overwrite: force)
            } catch {
                throw CLIError(error.description)
            }
            if json {
                try printJSON(Inspect.Output(token))
            } else {
                print("Created mesh '\(name)' and wrote its token to \(out) (mode 0600).")
                Inspect.printHuman(token)
                print("The token holds the mesh secret: share it only with nodes that may join.")
            }
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what a mesh token says, without its secret.",
            discussion: """
                TOKEN_OR_FILE is the token text itself (it starts with '\(MeshToken.prefix)') or a file \
                that holds it. The output shows the mesh ID (a one-way hash of the secret, safe \
                to share) and never the secret itself. A mistyped or truncated token fails its \
                checksum and is reported as such.

                Examples:
                  meshwork mesh inspect lab.mesh
                  meshwork mesh inspect "$(cat lab.mesh)" --json
                """
        )

        @Argument(help: ArgumentHelp("A mesh token, or a file holding one.", valueName: "token-or-file"))
        var tokenOrFile: String

        @Flag(name: .long, help: "Print JSON (fields: name, meshId, pool, poolAddresses, leaseSeconds, reclaimSeconds, genesisNodeId, genesisFingerprint, adminKeyId, bootstrap, tokenVersion).")
        var json = false

        struct Output: Encodable {
            let name: String
            let meshId: String
            let pool: String
            let poolAddresses: UInt64
            let leaseSeconds: UInt32
            let reclaimSeconds: UInt32
            let genesisNodeId: String
            let genesisFingerprint: String
            /// The admin key's node ID (hex), absent for a mesh without one.
            let adminKeyId: String?
            let bootstrap: [String]
            let tokenVersion: Int

            init(_ t: MeshToken) {
                name = t.name
                meshId = t.meshID.description
                pool = t.pool.description
                poolAddresses = t.pool.size - 2
                leaseSeconds = t.leaseSeconds
                reclaimSeconds = t.reclaimSeconds
                genesisNodeId = t.genesis.hex
                genesisFingerprint = t.genesis.fingerprint
                adminKeyId = t.admin?.hex
                bootstrap = t.bootstrap.map(\.description)
                tokenVersion = Int(MeshToken.version)
            }
        }

        static func printHuman(_ t: MeshToken) {
            printFields([
                ("Mesh", t.name),
                ("Mesh ID", t.meshID.description),
                ("Pool", "\(t.pool) (\(t.pool.size - 2) addresses)"),
                ("Lease", DurationText.format(seconds: UInt64(t.leaseSeconds))),
                ("Reclaim", DurationText.format(seconds: UInt64(t.reclaimSeconds))),
                ("Genesis", "\(t.genesis.fingerprint) (\(t.genesis.hex))"),
                ("Admin key", t.admin.map { "\($0.fingerprint) (\($0.hex))" } ?? "(none: no forced reclaims)"),
                ("Bootstrap", t.bootstrap.isEmpty ? "(none)" : t.bootstrap.map(\.description).joined(separator: ", ")),
            ])
        }

        func run() throws {
            let token: MeshToken
            do { token = try KeyStore.loadToken(tokenOrFile) } catch { throw CLIError(error.description) }
            if !tokenOrFile.hasPrefix("mwmesh"), KeyStore.isReadableByOthers(tokenOrFile) {
                printErr("warning: \(tokenOrFile) is readable by other users and holds the mesh secret; run 'chmod 600 \(tokenOrFile)'")
            }
            if json { try printJSON(Output(token)) } else { Self.printHuman(token) }
        }
    }
}
