import MeshCore
import MeshWire

/// A mesh token: everything a node needs to join a mesh, as one line of text.
///
/// Text: `mwmesh1.` then base64url (no padding) of the binary payload followed by a
/// 4-byte checksum, the first 4 bytes of BLAKE2b("meshwork token v1" ‖ payload), so that
/// a typo or a truncated paste is caught. The payload (big-endian; docs/wire-format.md):
///
/// ```
/// u8   version (1)
/// u8   flags (bit 0: an admin key follows the genesis node ID; the others reserved, 0)
/// u8   name length, name (1-32 bytes of A-Z a-z 0-9 . _ -)
/// u32  pool network address, u8 pool prefix length (8-28)
/// u32  lease seconds, u32 reclaim seconds
/// 32   mesh secret
/// 32   genesis node ID (Ed25519 public key of the node that owns the pool at first)
/// 32   admin key (Ed25519 public key; only with flag bit 0): the one signer of forced
///      reclaims (`meshwork pool reclaim --force`). Its secret half stays with the operator.
/// u8   bootstrap count (0-16), then each: u8 host length, host, u16 port
/// ```
///
/// The token holds the mesh secret: whoever has it may join. Its `meshID` is safe to show.
public struct MeshToken: Sendable {
    public static let prefix = "mwmesh1."
    public static let version: UInt8 = 1
    public static let nameLimit = 32
    public static let bootstrapLimit = 16
    public static let poolLengths: ClosedRange<UInt8> = 8...28
    public static let timingLimits: ClosedRange<UInt32> = 1...(365 * 86400)
    public static let defaultLeaseSeconds: UInt32 = 86400
    public static let defaultReclaimSeconds: UInt32 = 86400
    static let flagAdmin: UInt8 = 0x01

    public let name: String
    public let pool: IPv4Prefix
    public let leaseSeconds: UInt32
    public let reclaimSeconds: UInt32
    public let secret: MeshSecret
    public let genesis: NodeID
    /// The operator's admin key, if the mesh has one (`mesh create` makes it): the only key
    /// whose signature makes a forced reclaim valid. Nil: no break-glass in this mesh.
    public let admin: NodeID?
    public let bootstrap: [HostPort]

    public var meshID: MeshID { secret.meshID }

    public enum TokenError: Error, Equatable, CustomStringConvertible {
        case badName(String)
        case poolTooSmall(IPv4Prefix)
        case poolTooLarge(IPv4Prefix)
        case badTiming(what: String, seconds: UInt64)
        case tooManyBootstrap(Int)
        case notAToken
        case unsupportedVersion(String)
        case malformed(String)
        case checksumMismatch

        public var description: String {
            switch self {
            case .badName(let n):
                return "mesh name '\(n)' is invalid: use 1-\(MeshToken.nameLimit) characters from A-Z a-z 0-9 . _ -"
            case .poolTooSmall(let p):
                return "pool \(p) is too small to be useful: use a prefix of /\(MeshToken.poolLengths.upperBound) or shorter, e.g. 100.80.0.0/16"
            case .poolTooLarge(let p):
                return "pool \(p) is too large: use a prefix of /\(MeshToken.poolLengths.lowerBound) or longer, e.g. 100.80.0.0/16"
            case .badTiming(let what, let s):
                return "\(what) of \(s)s is out of range: use 1s to 365d"
            case .tooManyBootstrap(let n):
                return "\(n) bootstrap endpoints is too many: name at most \(MeshToken.bootstrapLimit)"
            case .notAToken:
                return "not a mesh token: a token starts with '\(MeshToken.prefix)'; make one with 'meshwork mesh create'"
            case .unsupportedVersion(let p):
                return "mesh token version '\(p)' is not supported by this meshwork; upgrade meshwork"
            case .malformed(let why):
                return "the mesh token is corrupt (\(why)); copy it again from its source, whole and on one line"
            case .checksumMismatch:
                return "the mesh token's checksum does not match: it was mistyped or cut short; copy it again, whole and on one line"
            }
        }
    }

    public init(
        name: String, pool: IPv4Prefix, leaseSeconds: UInt32 = MeshToken.defaultLeaseSeconds,
        reclaimSeconds: UInt32 = MeshToken.defaultReclaimSeconds, secret: MeshSecret, genesis: NodeID,
        admin: NodeID? = nil, bootstrap: [HostPort] = []
    ) throws(TokenError) {
        guard Self.isValidName(name) else { throw .badName(name) }
        guard pool.length <= Self.poolLengths.upperBound else { throw .poolTooSmall(pool) }
        guard pool.length >= Self.poolLengths.lowerBound else { throw .poolTooLarge(pool) }
        guard Self.timingLimits.contains(leaseSeconds) else { throw .badTiming(what: "lease time", seconds: UInt64(leaseSeconds)) }
        guard Self.timingLimits.contains(reclaimSeconds) else { throw .badTiming(what: "reclaim time", seconds: UInt64(reclaimSeconds)) }
        guard bootstrap.count <= Self.bootstrapLimit else { throw .tooManyBootstrap(bootstrap.count) }
        self.name = name
        self.pool = pool
        self.leaseSeconds = leaseSeconds
        self.reclaimSeconds = reclaimSeconds
        self.secret = secret
        self.genesis = genesis
        self.admin = admin
        self.bootstrap = bootstrap
    }

    public static func isValidName(_ name: String) -> Bool {
        Names.isValid(name, limit: nameLimit)
    }

    // MARK: binary payload

    func payload() -> [UInt8] {
        var w = WireWriter(capacity: 128)
        w.writeUInt8(Self.version)
        w.writeUInt8(admin == nil ? 0 : Self.flagAdmin)
        w.writeString(.u8, name)
        w.write(pool)
        w.writeUInt32(leaseSeconds)
        w.writeUInt32(reclaimSeconds)
        secret.withUnsafeBytes { w.writeBytes($0) }
        w.write(genesis)
        if let admin { w.write(admin) }
        w.writeArray(.u8, bootstrap)
        return w.bytes
    }

    /// Decodes a payload (without the checksum). Wire problems become `.malformed`.
    static func decodePayload(_ bytes: [UInt8]) throws(TokenError) -> MeshToken {
        var r = WireReader(bytes)
        do {
            let version = try r.readUInt8("token version")
            guard version == Self.version else { throw TokenError.unsupportedVersion("v\(version)") }
            let flags = try r.readUInt8("token flags")
            guard flags & ~Self.flagAdmin == 0 else { throw TokenError.unsupportedVersion("v\(version) with flags \(flags)") }
            let name = try r.readString(.u8, limit: nameLimit, "mesh name")
            let pool = try r.read(IPv4Prefix.self)
            let lease = try r.readUInt32("lease seconds")
            let reclaim = try r.readUInt32("reclaim seconds")
            var secretBytes = try r.readBytes(MeshSecret.byteCount, "mesh secret")
            defer { secureZero(&secretBytes) }
            let genesis = try r.read(NodeID.self)
            let admin = flags & Self.flagAdmin != 0 ? try r.read(NodeID.self) : nil
            let bootstrap = try r.readArray(of: HostPort.self, .u8, limit: bootstrapLimit, minimumElementSize: 4, "bootstrap endpoints")
            try r.expectEnd()
            let secret = try MeshSecret(bytes: secretBytes)
            return try MeshToken(
                name: name, pool: pool, leaseSeconds: lease, reclaimSeconds: reclaim, secret: secret,
                genesis: genesis, admin: admin, bootstrap: bootstrap)
        } catch let e as TokenError {
            throw e
        } catch let e as WireError {
            throw .malformed(e.description)
        } catch {
            throw .malformed("\(error)")
        }
    }

    static func checksum(_ payload: [UInt8]) -> [UInt8] {
        Array(Blake2b.hash(Array("meshwork token v1".utf8) + payload, outputLength: 16).prefix(4))
    }

    // MARK: text

    /// The one-line text form. Contains the secret.
    public var text: String {
        var p = payload()
        p.append(contentsOf: Self.checksum(p))
        defer { secureZero(&p) }
        return Self.prefix + Base64URL.encode(p)
    }

    /// Parses the one-line text form; surrounding whitespace is ignored.
    public init(parsing text: String) throws(TokenError) {
        let t = text.trimmingWhitespace()
        guard t.hasPrefix(Self.prefix) else {
            if t.hasPrefix("mwmesh"), let dot = t.firstIndex(of: ".") {
                throw .unsupportedVersion(String(t[..<dot]))
            }
            throw .notAToken
        }
        let body = Array(t.utf8.dropFirst(Self.prefix.utf8.count))
        guard var raw = Base64URL.decode(body) else {
            throw .malformed("it contains characters that are not base64url, or was cut short")
        }
        defer { secureZero(&raw) }
        guard raw.count > 4 else { throw .malformed("it is too short") }
        var payload = Array(raw.dropLast(4))
        defer { secureZero(&payload) }
        guard constantTimeEqual(Array(raw.suffix(4)), Self.checksum(payload)) else { throw .checksumMismatch }
        self = try Self.decodePayload(payload)
    }
}
