import Foundation
import MeshCore
import MeshCrypto
import MeshDaemon
import Testing

/// The fixtures in Keys/ were written by an earlier build: they must keep parsing, so a
/// format change that would strand users' existing keys and tokens fails here.
@Suite struct FixtureTests {
    static let keysDir = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Keys").path

    static let fixtureNode = "6b0a9a5f205c208d647d04fc86be1ce0650c924949ca56130877fba657fbd402"
    static let fixtureMeshID = "7b54fdfb56395564"

    @Test func fixtureIdentityAndTokenStillParse() throws {
        let tmp = NSTemporaryDirectory() + "meshwork-fixture-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        // git keeps no modes: copy the key and make it private, as a user would.
        let key = tmp + "/identity.key"
        try FileManager.default.copyItem(atPath: Self.keysDir + "/TEST-ONLY-identity.key", toPath: key)
        chmod(key, 0o600)
        let identity = try KeyStore.loadIdentity(at: key)
        #expect(identity.nodeID.hex == Self.fixtureNode)

        let token = try KeyStore.loadToken(Self.keysDir + "/TEST-ONLY-lab.mesh")
        #expect(token.name == "test-only")
        #expect(token.pool.description == "100.90.0.0/16")
        #expect(token.genesis == identity.nodeID)
        #expect(token.meshID.description == Self.fixtureMeshID)
        #expect(token.bootstrap == [HostPort(host: "127.0.0.1", port: 51830)])
    }
}
