import MeshCore
import MeshCrypto
import MeshDaemon
import Testing
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@Suite struct MeshTokenTests {
    func sample(bootstrap: [HostPort] = [HostPort(host: "127.0.0.1", port: 51830), HostPort(host: "::1", port: 9)]) throws -> MeshToken {
        var rng = SeededRandom(seed: 1)
        let genesis = NodeIdentity.generate(using: &rng)
        return try MeshToken(
            name: "lab", pool: IPv4Prefix(parsing: "100.80.0.0/16"), leaseSeconds: 600, reclaimSeconds: 7200,
            secret: MeshSecret.generate(using: &rng), genesis: genesis.nodeID, bootstrap: bootstrap)
    }

    @Test func roundTrips() throws {
        let t = try sample()
        let text = t.text
        #expect(text.hasPrefix("mwmesh1."))
        let back = try MeshToken(parsing: "  " + text + "\n")
        #expect(back.name == "lab")
        #expect(back.pool.description == "100.80.0.0/16")
        #expect(back.leaseSeconds == 600 && back.reclaimSeconds == 7200)
        #expect(back.genesis == t.genesis)
        #expect(back.bootstrap == t.bootstrap)
        #expect(back.secret.constantTimeEquals(t.secret))
        #expect(back.meshID == t.meshID)
        #expect(back.text == text)
    }

    @Test func everySingleCharacterTypoIsCaught() throws {
        let text = try sample().text
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var chars = Array(text)
        for i in MeshToken.prefix.count..<chars.count {
            let original = chars[i]
            let replacement = alphabet[(alphabet.firstIndex(of: original)! + 17) % alphabet.count]
            chars[i] = replacement
            #expect(throws: MeshToken.TokenError.self) { try MeshToken(parsing: String(chars)) }
            chars[i] = original
        }
    }

    @Test func everyTruncationIsRejected() throws {
        let text = try sample().text
        for n in 0..<text.count {
            #expect(throws: MeshToken.TokenError.self) { try MeshToken(parsing: String(text.prefix(n))) }
        }
    }

    @Test func namesTheProblem() throws {
        #expect(throws: MeshToken.TokenError.notAToken) { try MeshToken(parsing: "hello") }
        #expect(throws: MeshToken.TokenError.unsupportedVersion("mwmesh9")) { try MeshToken(parsing: "mwmesh9.AAAA") }
        let pool30 = try IPv4Prefix(parsing: "100.80.0.0/30")
        var rng = SeededRandom(seed: 2)
        #expect(throws: MeshToken.TokenError.poolTooSmall(pool30)) {
            try MeshToken(name: "x", pool: pool30, secret: .generate(using: &rng), genesis: NodeID(.zero))
        }
        #expect(throws: MeshToken.TokenError.badName("no spaces")) {
            try MeshToken(name: "no spaces", pool: IPv4Prefix(parsing: "10.0.0.0/8"), secret: .generate(using: &rng), genesis: NodeID(.zero))
        }
        #expect(throws: MeshToken.TokenError.badTiming(what: "reclaim time", seconds: 0)) {
            try MeshToken(name: "x", pool: IPv4Prefix(parsing: "10.0.0.0/8"), reclaimSeconds: 0, secret: .generate(using: &rng), genesis: NodeID(.zero))
        }
        let many = (0..<17).map { HostPort(host: "h\($0)", port: 1) }
        #expect(throws: MeshToken.TokenError.tooManyBootstrap(17)) { try sample(bootstrap: many) }
    }

    @Test func secretIsNotVisibleInDescriptions() throws {
        let t = try sample()
        let secretHex = t.secret.withUnsafeBytes { Hex.encode($0) }
        #expect(!t.meshID.description.contains(secretHex.prefix(8)))
        #expect(!"\(t.meshID)".contains(secretHex))
    }
}

@Suite struct IdentityKeyFileTests {
    func identity() -> NodeIdentity {
        var rng = SeededRandom(seed: 3)
        return NodeIdentity.generate(using: &rng)
    }

    @Test func roundTrips() throws {
        let id = identity()
        let text = IdentityKeyFile.encode(id)
        #expect(text.contains(IdentityKeyFile.begin))
        #expect(text.contains(id.nodeID.hex))
        let back = try IdentityKeyFile.decode(Array(text.utf8))
        #expect(back.nodeID == id.nodeID)
        #expect(back.sign([1]) == id.sign([1]))
    }

    @Test func detectsCorruption() throws {
        let text = IdentityKeyFile.encode(identity())
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let seedLine = lines.firstIndex { $0.hasPrefix("seed: ") }!
        let original = lines[seedLine]
        // Flip one character of the seed: the checksum catches it.
        var chars = Array(original)
        chars[10] = chars[10] == "A" ? "B" : "A"
        lines[seedLine] = String(chars)
        #expect(throws: IdentityKeyFile.FormatError.checksumMismatch) { try IdentityKeyFile.decode(Array(lines.joined(separator: "\n").utf8)) }
        lines[seedLine] = original

        let nodeLine = lines.firstIndex { $0.hasPrefix("node: ") }!
        lines[nodeLine] = "node: " + String(repeating: "ab", count: 32)
        #expect(throws: IdentityKeyFile.FormatError.checksumMismatch) { try IdentityKeyFile.decode(Array(lines.joined(separator: "\n").utf8)) }

        #expect(throws: IdentityKeyFile.FormatError.notAKeyFile) { try IdentityKeyFile.decode(Array("hello\n".utf8)) }
        #expect(throws: IdentityKeyFile.FormatError.unsupportedVersion("-----BEGIN MESHWORK IDENTITY v2-----")) {
            try IdentityKeyFile.decode(Array(text.replacingOccurrences(of: "v1-----", with: "v2-----").utf8))
        }
    }

    @Test func everyTruncationIsRejected() {
        let bytes = Array(IdentityKeyFile.encode(identity()).utf8)
        let endLine = bytes.count - IdentityKeyFile.end.utf8.count - 1
        for n in 0..<endLine {
            #expect(throws: IdentityKeyFile.FormatError.self) { try IdentityKeyFile.decode(Array(bytes.prefix(n))) }
        }
    }
}

@Suite struct KeyStoreTests {
    func tempDir() -> String {
        var template = Array("/tmp/meshwork-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!)
    }

    @Test func savesWithMode0600AndRefusesOverwrite() throws {
        let dir = tempDir()
        defer { rm(dir) }
        var rng = SeededRandom(seed: 4)
        let id = NodeIdentity.generate(using: &rng)
        let path = dir + "/sub/identity.key"
        try KeyStore.saveIdentity(id, at: path, overwrite: false)
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(throws: FileError.exists(path)) { try KeyStore.saveIdentity(NodeIdentity.generate(using: &rng), at: path, overwrite: false) }
        #expect(try KeyStore.loadIdentity(at: path).nodeID == id.nodeID)
        // No temporary files are left behind.
        #expect(listing(dir + "/sub") == ["identity.key"])
    }

    @Test func refusesKeyReadableByOthers() throws {
        let dir = tempDir()
        defer { rm(dir) }
        var rng = SeededRandom(seed: 5)
        let path = dir + "/identity.key"
        try KeyStore.saveIdentity(NodeIdentity.generate(using: &rng), at: path, overwrite: false)
        chmod(path, 0o644)
        #expect {
            try KeyStore.loadIdentity(at: path)
        } throws: { error in
            "\(error)".contains("readable by other users (mode 0644)") && "\(error)".contains("chmod 600 \(path)")
        }
    }

    @Test func missingFileIsNamed() {
        #expect(throws: KeyStore.LoadError.self) { try KeyStore.loadIdentity(at: "/nonexistent/meshwork/identity.key") }
    }

    func listing(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    func rm(_ dir: String) {
        for f in listing(dir) {
            let p = dir + "/" + f
            var st = stat()
            if lstat(p, &st) == 0, st.st_mode & S_IFMT == S_IFDIR { rm(p) } else { unlink(p) }
        }
        rmdir(dir)
    }
}
