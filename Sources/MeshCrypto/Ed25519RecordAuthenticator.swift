import MeshCore

/// Ed25519 signatures by the node's identity key (libsodium). A node ID is its public key,
/// so any record can be checked with nothing but the record itself.
public struct Ed25519RecordAuthenticator: RecordAuthenticator {
    let identity: NodeIdentity

    public init(identity: NodeIdentity) { self.identity = identity }

    public func sign(_ message: [UInt8]) -> [UInt8] { identity.sign(message).bytes }

    public func verify(signature: [UInt8], message: [UInt8], signer: NodeID) -> Bool {
        guard let sig = try? Ed25519Signature(bytes: signature) else { return false }
        return Ed25519PublicKey(signer).isValidSignature(sig, for: message)
    }
}
