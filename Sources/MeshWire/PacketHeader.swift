/// The outer header every Meshwork UDP datagram starts with. One port carries gossip,
/// allocation and data; the type byte tells them apart. Layout (docs/wire-format.md):
///
/// ```
///  0                   1
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
/// +---------------+---------------+-------------- - -
/// |    version    |     type      |  body (by type)
/// +---------------+---------------+-------------- - -
/// ```
public struct PacketHeader: Hashable, Sendable, WireCodable {
    /// The only wire version this build speaks.
    public static let currentVersion: UInt8 = 1
    public static let size = 2

    public var version: UInt8
    public var type: MessageType

    public init(type: MessageType, version: UInt8 = PacketHeader.currentVersion) {
        self.version = version
        self.type = type
    }

    public init(from reader: inout WireReader) throws(WireError) {
        let start = reader
        let version = try reader.readUInt8("header version")
        guard version == Self.currentVersion else {
            reader = start
            throw .unsupportedVersion(version)
        }
        let raw = try reader.readUInt8("header type")
        guard let type = MessageType(rawValue: raw) else {
            reader = start
            throw .unknownType(raw)
        }
        self.version = version
        self.type = type
    }

    public func encode(to writer: inout WireWriter) {
        writer.writeUInt8(version)
        writer.writeUInt8(type.rawValue)
    }
}

/// Every message type on the wire. Codes are never reused; the body of each is specified
/// in docs/wire-format.md by the issue that introduces it.
public enum MessageType: UInt8, Sendable, CaseIterable {
    /// Membership gossip, sealed with the mesh gossip key.
    case gossip = 0x01
    /// Address-pool exchange (DISCOVER, OFFER, REQUEST, ACK, NAK, DECLINE, GRANTS, DIGEST, RECLAIM ASK/VOTE), sealed with the gossip key.
    case pool = 0x02
    /// Noise IKpsk2 handshake, first message.
    case handshakeInitiation = 0x03
    /// Noise IKpsk2 handshake, second message.
    case handshakeResponse = 0x04
    /// Data on an established session, demultiplexed by receiver index.
    case transportData = 0x05
    /// A sealed packet forwarded through a relaying member.
    case relay = 0x06
}
