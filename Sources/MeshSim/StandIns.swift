import MeshCore
import MeshGossip
import MeshNode

/// Cost-free stand-ins for signing and sealing, so that a thousand simulated nodes can run
/// for minutes of virtual time in seconds. They live only in this module: the daemon
/// cannot be configured to use them. Real crypto is proved by its own tests and by the
/// real-process tests, and `Simulation(realCrypto: true)` runs the real thing at small N.
struct NullAuthenticator: RecordAuthenticator {
    func sign(_ message: [UInt8]) -> [UInt8] { [UInt8](repeating: 0, count: MemberRecord.signatureBytes) }
    func verify(signature: [UInt8], message: [UInt8], signer: NodeID) -> Bool { true }
}

/// Adds as many bytes as the real sealer, so byte counts stay true to life.
struct NullSealer: PacketSealer {
    var overhead: Int { 40 }
    func seal(_ plaintext: [UInt8], header: [UInt8]) -> [UInt8] { [UInt8](repeating: 0, count: 24) + plaintext + [UInt8](repeating: 0, count: 16) }
    func open(_ sealed: ArraySlice<UInt8>, header: [UInt8]) -> [UInt8]? {
        guard sealed.count >= 40 else { return nil }
        return Array(sealed.dropFirst(24).dropLast(16))
    }
}
