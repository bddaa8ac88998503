import Foundation
import Testing

@Suite struct VersionAndHelpTests {
    @Test func version() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["version"])
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("meshwork 0.1.0\nwire protocol 1\nlibsodium 1.0."))
        let j = try cli.json(try cli.run(["version", "--json"]).stdout)
        #expect(j["version"] as? String == "0.1.0")
        #expect(j["wireVersion"] as? Int == 1)
        #expect((j["libsodium"] as? String)?.hasPrefix("1.0.") == true)
        #expect(try cli.run(["--version"]).stdout == "meshwork 0.1.0\n")
    }

    @Test(arguments: [["--help"], ["keygen", "--help"], ["mesh", "create", "--help"], ["mesh", "inspect", "--help"]])
    func helpTeaches(args: [String]) throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(args)
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE:"))
        #expect(r.stdout.contains("Example") || args == ["--help"])
    }
}

@Suite struct KeygenTests {
    @Test func writesKeyWithMode0600AndRefusesOverwrite() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["keygen", "--out", "node.key"])
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("Wrote a new node identity to node.key (mode 0600).\nNode ID:     "))
        #expect(r.stdout.contains("Fingerprint: "))
        #expect(cli.mode("node.key") == 0o600)
        let before = try String(contentsOfFile: cli.path("node.key"), encoding: .utf8)

        let again = try cli.run(["keygen", "--out", "node.key"])
        #expect(again.status == 1)
        #expect(again.stderr == "Error: node.key already exists; pass --force to replace it (its identity is lost unless backed up), or choose another --out\n")
        #expect(try String(contentsOfFile: cli.path("node.key"), encoding: .utf8) == before)

        let forced = try cli.run(["keygen", "--out", "node.key", "--force", "--json"])
        #expect(forced.status == 0)
        let j = try cli.json(forced.stdout)
        #expect((j["nodeId"] as? String)?.count == 64)
        #expect((j["fingerprint"] as? String).map { (j["nodeId"] as! String).hasPrefix($0) } == true)
        #expect(j["path"] as? String == "node.key")
        #expect(try String(contentsOfFile: cli.path("node.key"), encoding: .utf8) != before)
        #expect(cli.mode("node.key") == 0o600)
    }

    @Test func defaultsToStateDirectory() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["keygen", "--json"])
        #expect(r.status == 0)
        #expect(try cli.json(r.stdout)["path"] as? String == cli.dir + "/state/identity.key")
        #expect(cli.mode("state/identity.key") == 0o600)
    }
}

@Suite struct MeshCreateAndInspectTests {
    @Test func createToFileThenInspect() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let key = try cli.json(try cli.run(["keygen", "--out", "k.key", "--json"]).stdout)
        let r = try cli.run(["mesh", "create", "--name", "lab", "--pool", "100.80.0.0/16", "--key", "k.key", "--out", "lab.mesh",
                             "--bootstrap", "127.0.0.1:51830", "--bootstrap", "[::1]:51831", "--reclaim", "12h", "--lease", "30m"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("Created mesh 'lab' and wrote its token to lab.mesh (mode 0600).\n"))
        #expect(cli.mode("lab.mesh") == 0o600)
        // The admin key, beside the token, private; the token names its public half.
        #expect(cli.mode("lab.admin.key") == 0o600)
        #expect(r.stderr.contains("Wrote the mesh's admin key to lab.admin.key"), "\(r.stderr)")
        let token = try String(contentsOfFile: cli.path("lab.mesh"), encoding: .utf8)
        #expect(token.hasPrefix("mwmesh1."))

        for source in ["lab.mesh", token.trimmingCharacters(in: .whitespacesAndNewlines)] {
            let i = try cli.run(["mesh", "inspect", source, "--json"])
            #expect(i.status == 0)
            let j = try cli.json(i.stdout)
            #expect(j["name"] as? String == "lab")
            #expect(j["pool"] as? String == "100.80.0.0/16")
            #expect(j["poolAddresses"] as? Int == 65534)
            #expect(j["leaseSeconds"] as? Int == 1800)
            #expect(j["reclaimSeconds"] as? Int == 43200)
            #expect(j["genesisNodeId"] as? String == key["nodeId"] as? String)
            #expect(j["genesisFingerprint"] as? String == key["fingerprint"] as? String)
            #expect(j["bootstrap"] as? [String] == ["127.0.0.1:51830", "[::1]:51831"])
            #expect((j["meshId"] as? String)?.count == 16)
            #expect((j["adminKeyId"] as? String)?.count == 64)
            #expect(j["adminKeyId"] as? String != j["genesisNodeId"] as? String)
            #expect(Set(j.keys) == ["name", "meshId", "pool", "poolAddresses", "leaseSeconds", "reclaimSeconds",
                                    "genesisNodeId", "genesisFingerprint", "adminKeyId", "bootstrap", "tokenVersion"])
        }
        let human = try cli.run(["mesh", "inspect", "lab.mesh"])
        #expect(human.status == 0)
        #expect(human.stdout.contains("Mesh:      lab\n"))
        #expect(human.stdout.contains("Pool:      100.80.0.0/16 (65534 addresses)\n"))
        #expect(human.stdout.contains("Reclaim:   12h\n"))
        #expect(human.stdout.contains("Bootstrap: 127.0.0.1:51830, [::1]:51831\n"))
        let adminID = try cli.json(try cli.run(["mesh", "inspect", "lab.mesh", "--json"]).stdout)["adminKeyId"] as? String ?? "?"
        #expect(human.stdout.contains("Admin key: \(adminID.prefix(16)) (\(adminID))\n"), "\(human.stdout)")
        // Made again: the admin key is not replaced silently; without one, the token names none.
        let again = try cli.run(["mesh", "create", "--name", "lab", "--pool", "100.80.0.0/16", "--key", "k.key", "--out", "other.mesh"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("lab.admin.key already exists"), "\(again.stderr)")
        let bare = try cli.run(["mesh", "create", "--name", "lab", "--pool", "100.80.0.0/16", "--key", "k.key", "--out", "bare.mesh", "--no-admin-key"])
        #expect(bare.status == 0, "\(bare.stderr)")
        let b = try cli.json(try cli.run(["mesh", "inspect", "bare.mesh", "--json"]).stdout)
        #expect(b["adminKeyId"] == nil)
        // The secret never appears: no long run of the token's body shows up in the output.
        let body = Array(token.dropFirst("mwmesh1.".count).trimmingCharacters(in: .whitespacesAndNewlines))
        for start in stride(from: 0, to: body.count - 12, by: 4) {
            #expect(!human.stdout.contains(String(body[start..<start + 12])))
        }
    }

    @Test func createToStdoutMakesKeyIfAbsent() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["mesh", "create", "--name", "lab", "--pool", "100.80.0.0/16"])
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("mwmesh1.") && r.stdout.hasSuffix("\n") && r.stdout.split(separator: "\n").count == 1)
        #expect(r.stderr.contains("Made a new node identity in \(cli.dir)/state/identity.key"))
        #expect(r.stderr.contains("Created mesh 'lab' (mesh ID "))
        #expect(cli.mode("state/identity.key") == 0o600)
        let i = try cli.run(["mesh", "inspect", r.stdout])
        #expect(i.status == 0)
    }

    @Test func warnsAboutPublicPool() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["mesh", "create", "--name", "lab", "--pool", "8.8.0.0/16"])
        #expect(r.status == 0)
        #expect(r.stderr.contains("warning: 8.8.0.0/16 is not private-use address space"))
    }

    /// Each bad argument exits 64 with a message naming the value and the fix, and writes nothing.
    @Test(arguments: [
        (["--pool", "100.80.0.0"], "Error: --pool: '100.80.0.0' is not a CIDR prefix: write it as ADDRESS/LENGTH, e.g. 100.80.0.0/16"),
        (["--pool", "100.80.1.0/16"], "Error: --pool: '100.80.1.0/16' has host bits set after the prefix length; did you mean 100.80.0.0/16?"),
        (["--pool", "300.80.0.0/16"], "Error: --pool: '300.80.0.0' is not a valid IPv4 address: write four decimal octets 0-255, e.g. 100.80.0.0"),
        (["--pool", "100.80.0.0/30"], "Error: --pool: pool 100.80.0.0/30 is too small to be useful: use a prefix of /28 or shorter, e.g. 100.80.0.0/16"),
        (["--pool", "96.0.0.0/4"], "Error: --pool: pool 96.0.0.0/4 is too large: use a prefix of /8 or longer, e.g. 100.80.0.0/16"),
        (["--pool", "100.80.0.0/16", "--lease", "1w"], "Error: --lease: '1w' is not a duration: write a whole number with a unit s, m, h or d (e.g. 90s, 15m, 24h, 7d)"),
        (["--pool", "100.80.0.0/16", "--reclaim", "0s"], "Error: --reclaim: '0s' is out of range: use 1s to 365d"),
        (["--pool", "100.80.0.0/16", "--bootstrap", "host1"], "Error: --bootstrap: 'host1' has no port: write HOST:PORT, e.g. 192.0.2.1:51830 or [2001:db8::1]:51830"),
    ])
    func badArguments(extra: [String], message: String) throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["mesh", "create", "--name", "lab", "--out", "lab.mesh"] + extra)
        #expect(r.status == 64)
        #expect(r.stderr.hasPrefix(message + "\n"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
        #expect(!cli.exists("lab.mesh"))
        #expect(!cli.exists("state"))
    }

    @Test func jsonNeedsOut() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["mesh", "create", "--name", "lab", "--pool", "100.80.0.0/16", "--json"])
        #expect(r.status == 64)
        #expect(r.stderr.hasPrefix("Error: --json needs --out FILE: the token holds the mesh secret, so it is written to a file and never printed in JSON\n"))
        #expect(r.stdout.isEmpty)
        #expect(!cli.exists("state"))
    }

    @Test func badNameIsNamed() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let r = try cli.run(["mesh", "create", "--name", "my lab", "--pool", "100.80.0.0/16"])
        #expect(r.status == 64)
        #expect(r.stderr.hasPrefix("Error: --name: mesh name 'my lab' is invalid: use 1-32 characters from A-Z a-z 0-9 . _ -\n"))
        #expect(!cli.exists("state"))
    }

    @Test func refusesToOverwriteTokenAndInsecureKey() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        #expect(try cli.run(["mesh", "create", "--name", "a", "--pool", "10.1.0.0/16", "--out", "m"]).status == 0)
        let before = try String(contentsOfFile: cli.path("m"), encoding: .utf8)
        let r = try cli.run(["mesh", "create", "--name", "b", "--pool", "10.1.0.0/16", "--out", "m"])
        #expect(r.status == 1)
        #expect(r.stderr == "Error: m already exists; pass --force to replace it, or choose another --out\n")
        #expect(try String(contentsOfFile: cli.path("m"), encoding: .utf8) == before)

        #expect(try cli.run(["keygen", "--out", "open.key"]).status == 0)
        chmod(cli.path("open.key"), 0o644)
        let k = try cli.run(["mesh", "create", "--name", "b", "--pool", "10.1.0.0/16", "--key", "open.key", "--out", "n"])
        #expect(k.status == 1)
        #expect(k.stderr == "Error: open.key is readable by other users (mode 0644); it holds a secret, so it is not used: run 'chmod 600 open.key'\n")
        #expect(!cli.exists("n"))
    }

    @Test func inspectReportsCorruptTokens() throws {
        let cli = CLI()
        defer { cli.cleanup() }
        let token = try cli.run(["mesh", "create", "--name", "lab", "--pool", "100.80.0.0/16"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var chars = Array(token)
        let i = chars.count / 2
        chars[i] = chars[i] == "A" ? "B" : "A"
        let typo = try cli.run(["mesh", "inspect", String(chars)])
        #expect(typo.status == 1)
        #expect(typo.stderr == "Error: the mesh token's checksum does not match: it was mistyped or cut short; copy it again, whole and on one line\n")

        let cut = try cli.run(["mesh", "inspect", String(token.prefix(30))])
        #expect(cut.status == 1)
        #expect(cut.stderr.hasPrefix("Error: the mesh token"))

        let missing = try cli.run(["mesh", "inspect", "nope.mesh"])
        #expect(missing.status == 1)
        #expect(missing.stderr == "Error: 'nope.mesh' is neither a file nor a mesh token (a token starts with 'mwmesh1.'); check the path, or make a token with 'meshwork mesh create'\n")

        try "hello\n".write(toFile: cli.path("junk.mesh"), atomically: true, encoding: .utf8)
        let junk = try cli.run(["mesh", "inspect", "junk.mesh"])
        #expect(junk.status == 1)
        #expect(junk.stderr == "Error: junk.mesh: not a mesh token: a token starts with 'mwmesh1.'; make one with 'meshwork mesh create'\n")

        try (token + "\n").write(toFile: cli.path("open.mesh"), atomically: true, encoding: .utf8)
        chmod(cli.path("open.mesh"), 0o644)
        let open = try cli.run(["mesh", "inspect", "open.mesh"])
        #expect(open.status == 0)
        #expect(open.stderr.contains("warning: open.mesh is readable by other users and holds the mesh secret; run 'chmod 600 open.mesh'"))
    }
}
