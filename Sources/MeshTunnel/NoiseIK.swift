import MeshCore
import MeshCrypto

extension Noise {
    /// One side of an IK handshake (`<- s` known in advance; `-> e, es, s, ss`;
    /// `<- e, ee, se`), with an optional pre-shared key mixed in at the end of the second
    /// message (`psk2`). After both messages, `split()` gives the transport ciphers.
    public struct IKHandshake: Sendable {
        public enum Role: Sendable { case initiator, responder }

        public let role: Role
        let psk: [UInt8]?
        var state: SymmetricState
        let s: X25519SecretKey
        var sPublic: [UInt8]
        var e: X25519SecretKey?
        var ePublic: [UInt8] = []
        /// The peer's static key: known to the initiator in advance, learnt by the responder.
        public private(set) var remoteStatic: [UInt8]?
        var remoteEphemeral: [UInt8]?
        var step = 0

        public static func protocolName(psk: Bool) -> String {
            psk ? "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b" : "Noise_IK_25519_ChaChaPoly_BLAKE2b"
        }

        /// - Parameters:
        ///   - remoteStatic: the responder's static public key (the initiator must give it).
        ///   - ephemeral: the ephemeral secret (fresh random in use; fixed in test vectors).
        public init(role: Role, prologue: [UInt8], psk: [UInt8]?, staticKey: X25519SecretKey, ephemeral: X25519SecretKey,
                    remoteStatic: [UInt8]? = nil) {
            self.role = role
            self.psk = psk
            state = SymmetricState(protocolName: Self.protocolName(psk: psk != nil))
            s = staticKey
            sPublic = staticKey.publicKey.bytes
            e = ephemeral
            self.remoteStatic = remoteStatic
            state.mixHash(prologue)
            // Pre-message: the responder's static key.
            state.mixHash(role == .initiator ? remoteStatic ?? [] : sPublic)
        }

        /// The handshake hash (channel binding), final after both messages.
        public var handshakeHash: [UInt8] { state.h }

        func dh(_ secret: X25519SecretKey, _ pub: [UInt8]) throws(Failure) -> [UInt8] {
            guard let p = try? X25519PublicKey(bytes: pub), let k = try? secret.sharedSecret(with: p) else { throw .weakKey }
            return k.withUnsafeBytes { Array($0) }
        }

        mutating func writeE(_ out: inout [UInt8]) throws(Failure) {
            ePublic = e!.publicKey.bytes
            out += ePublic
            state.mixHash(ePublic)
            if psk != nil { try state.mixKey(ePublic) }
        }

        mutating func readE(_ msg: [UInt8], _ at: inout Int) throws(Failure) {
            guard msg.count >= at + dhLength else { throw .tooShort }
            let re = Array(msg[at..<at + dhLength])
            at += dhLength
            remoteEphemeral = re
            state.mixHash(re)
            if psk != nil { try state.mixKey(re) }
        }

        /// Writes the next handshake message carrying `payload`.
        public mutating func writeMessage(_ payload: [UInt8]) throws(Failure) -> [UInt8] {
            var out: [UInt8] = []
            switch (role, step) {
            case (.initiator, 0):
                guard let rs = remoteStatic else { throw .wrongState }
                try writeE(&out)
                try state.mixKey(try dh(e!, rs))                     // es
                out += state.encryptAndHash(sPublic)                 // s
                try state.mixKey(try dh(s, rs))                      // ss
            case (.responder, 1):
                guard let re = remoteEphemeral, let rs = remoteStatic else { throw .wrongState }
                try writeE(&out)
                try state.mixKey(try dh(e!, re))                     // ee
                try state.mixKey(try dh(e!, rs))                     // se
                if let psk { try state.mixKeyAndHash(psk) }          // psk2
            default:
                throw .wrongState
            }
            out += state.encryptAndHash(payload)
            step += 1
            return out
        }

        /// Reads the next handshake message; returns its payload.
        public mutating func readMessage(_ msg: [UInt8]) throws(Failure) -> [UInt8] {
            var at = 0
            switch (role, step) {
            case (.responder, 0):
                try readE(msg, &at)
                try state.mixKey(try dh(s, remoteEphemeral!))        // es
                let sealed = dhLength + (state.cipher.hasKey ? 16 : 0)
                guard msg.count >= at + sealed else { throw .tooShort }
                let rs = try state.decryptAndHash(Array(msg[at..<at + sealed]))  // s
                at += sealed
                remoteStatic = rs
                try state.mixKey(try dh(s, rs))                      // ss
            case (.initiator, 1):
                try readE(msg, &at)
                try state.mixKey(try dh(e!, remoteEphemeral!))       // ee
                try state.mixKey(try dh(s, remoteEphemeral!))        // se
                if let psk { try state.mixKeyAndHash(psk) }          // psk2
            default:
                throw .wrongState
            }
            let payload = try state.decryptAndHash(Array(msg[at...]))
            step += 1
            return payload
        }

        public var isComplete: Bool { step == 2 }

        /// The transport ciphers: (send, receive) for this side.
        public func split() throws(Failure) -> (send: CipherState, receive: CipherState) {
            guard isComplete else { throw .wrongState }
            let (c1, c2) = try state.split()
            return role == .initiator ? (c1, c2) : (c2, c1)
        }
    }
}
