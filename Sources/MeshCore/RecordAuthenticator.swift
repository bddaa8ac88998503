/// Signs what this node originates (membership records, pool grants) and verifies what
/// others signed. The real node uses Ed25519 with its identity key
/// (`Ed25519RecordAuthenticator` in MeshCrypto); only the simulator has a cost-free stand-in.
public protocol RecordAuthenticator: Sendable {
    func sign(_ message: [UInt8]) -> [UInt8]
    func verify(signature: [UInt8], message: [UInt8], signer: NodeID) -> Bool
}
