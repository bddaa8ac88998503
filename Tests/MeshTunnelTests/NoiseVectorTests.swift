import Foundation
import MeshCore
import MeshCrypto
import MeshTunnel
import Testing

/// The public Noise test vectors (cacophony), read from ../shared/noise-vectors (never
/// copied into this repository). Skipped, with the reason, where the file is absent.
@Suite struct NoiseVectorTests {
    static let path: String = {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/noise-vectors/cacophony.txt").path
    }()

    static func vector(_ name: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let vectors = json["vectors"] as? [[String: Any]] else { return nil }
        return vectors.first { $0["protocol_name"] as? String == name }
    }

    static func hex(_ s: Any?) -> [UInt8] { Hex.decode(s as? String ?? "") ?? [] }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: path), "../shared/noise-vectors/cacophony.txt is not on this machine"),
          arguments: ["Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b", "Noise_IK_25519_ChaChaPoly_BLAKE2b"])
    func handshakeAndTransportMatchTheVector(name: String) throws {
        let v = try #require(Self.vector(name), "no vector named \(name)")
        let initPSK = (v["init_psks"] as? [String])?.first.map { Self.hex($0) }
        let respPSK = (v["resp_psks"] as? [String])?.first.map { Self.hex($0) }
        var i = Noise.IKHandshake(role: .initiator, prologue: Self.hex(v["init_prologue"]), psk: initPSK,
                                  staticKey: try X25519SecretKey(bytes: Self.hex(v["init_static"])),
                                  ephemeral: try X25519SecretKey(bytes: Self.hex(v["init_ephemeral"])),
                                  remoteStatic: Self.hex(v["init_remote_static"]))
        var r = Noise.IKHandshake(role: .responder, prologue: Self.hex(v["resp_prologue"]), psk: respPSK,
                                  staticKey: try X25519SecretKey(bytes: Self.hex(v["resp_static"])),
                                  ephemeral: try X25519SecretKey(bytes: Self.hex(v["resp_ephemeral"])))
        let messages = try #require(v["messages"] as? [[String: String]])
        #expect(messages.count >= 4)
        // The two handshake messages.
        let m0 = try i.writeMessage(Self.hex(messages[0]["payload"]))
        #expect(m0 == Self.hex(messages[0]["ciphertext"]), "\(name): first handshake message")
        #expect(try r.readMessage(m0) == Self.hex(messages[0]["payload"]))
        let m1 = try r.writeMessage(Self.hex(messages[1]["payload"]))
        #expect(m1 == Self.hex(messages[1]["ciphertext"]), "\(name): second handshake message")
        #expect(try i.readMessage(m1) == Self.hex(messages[1]["payload"]))
        #expect(i.handshakeHash == Self.hex(v["handshake_hash"]))
        #expect(r.handshakeHash == i.handshakeHash)
        let initiatorPublic = try X25519SecretKey(bytes: Self.hex(v["init_static"])).publicKey.bytes
        #expect(r.remoteStatic == initiatorPublic)
        // Transport messages, alternating initiator → responder → initiator ...
        var (iSend, iRecv) = try i.split()
        var (rSend, rRecv) = try r.split()
        for (k, m) in messages.enumerated().dropFirst(2) {
            let payload = Self.hex(m["payload"]), expected = Self.hex(m["ciphertext"])
            if k % 2 == 0 {
                let c = iSend.encrypt(payload)
                #expect(c == expected, "\(name): transport message \(k)")
                #expect(try rRecv.decrypt(c) == payload)
            } else {
                let c = rSend.encrypt(payload)
                #expect(c == expected, "\(name): transport message \(k)")
                #expect(try iRecv.decrypt(c) == payload)
            }
        }
    }
}
