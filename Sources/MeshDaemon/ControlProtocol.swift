import Foundation

/// The local control protocol: one JSON request line on the Unix socket
/// `STATE/control.sock` (mode 0600), one JSON reply line, then the daemon closes.
/// Field names are stable; docs/cli.md lists them.
public enum ControlProtocol {
    public struct Request: Codable, Sendable {
        public var command: String
        /// The node a command acts on (`reclaim`): a name, a node ID or a prefix of it.
        public var target: String?
        /// `send`: the message, base64.
        public var data: String?
        /// `send`: how long to wait for the acknowledgement.
        public var timeoutSeconds: Double?
        /// `reclaim`: the admin key's signature over each holding of the `reclaim-plan`.
        public var authorizations: [Authorization]?
        public init(command: String, target: String? = nil, data: String? = nil, timeoutSeconds: Double? = nil,
                    authorizations: [Authorization]? = nil) {
            self.command = command
            self.target = target
            self.data = data
            self.timeoutSeconds = timeoutSeconds
            self.authorizations = authorizations
        }
    }

    /// One holding a forced reclaim would take (`reclaim-plan`), and with `signature` (hex)
    /// the admin key's consent to it (`reclaim`). `signer` is the admin key's node ID (hex).
    public struct Authorization: Codable, Sendable, Equatable {
        public var holding: String
        public var cutoff: UInt64
        public var successor: String
        public var signer: String?
        public var signature: String?
        public init(holding: String, cutoff: UInt64, successor: String, signer: String? = nil, signature: String? = nil) {
            self.holding = holding
            self.cutoff = cutoff
            self.successor = successor
            self.signer = signer
            self.signature = signature
        }
    }

    /// The answer to `reclaim-plan`: what the admin key must sign.
    public struct ReclaimPlan: Codable, Sendable {
        public var nodeId: String
        public var fingerprint: String
        public var admin: String
        public var holdings: [Authorization]
        public init(nodeId: String, fingerprint: String, admin: String, holdings: [Authorization]) {
            self.nodeId = nodeId
            self.fingerprint = fingerprint
            self.admin = admin
            self.holdings = holdings
        }
    }

    public struct MemberCounts: Codable, Sendable, Equatable {
        public var alive = 0, suspect = 0, dead = 0, left = 0
        public init() {}
    }

    public struct Status: Codable, Sendable {
        public var nodeId: String
        public var fingerprint: String
        public var name: String
        public var meshId: String
        public var meshName: String
        public var listen: String
        public var endpoints: [String]
        public var incarnation: UInt64
        public var members: MemberCounts
        public var uptimeSeconds: Double
        public var awareness: Int
        public var counters: Counters
        /// This node's overlay address, once it holds a lease.
        public var address: String?
        /// The pool as a CIDR, and where acquiring an address stands: idle, discovering,
        /// requesting, bound or exhausted.
        public var pool: String
        public var poolState: String
        public var poolPrefixLength: Int
        /// Why the node has no address yet, when it is backing off.
        public var poolWaiting: String?
        /// Not granting: cut off from members holding most of the pool for half the reclaim time.
        public var poolFenced: Bool
        public var reclaimSeconds: UInt32
        /// Owners of space that membership says are gone, and for how long (reclaimed after reclaimSeconds).
        public var poolDepartures: [Departure]
        /// The TUN device and its MTU; absent with --no-tun.
        public var tun: String?
        public var mtu: Int?
        /// Usable addresses of the pool; those leased in this node's view; those not
        /// leased; and those in the free ranges this node owns (its `ownedRanges`). Optional
        /// only so that a newer CLI can read an older node's answer.
        public var poolAddresses: Int?
        public var poolLeases: Int?
        public var poolFreeAddresses: Int?
        public var poolOwnedAddresses: Int?
        public var ownedRanges: [String]?
        /// Where Prometheus metrics are served (`up --metrics`), as bound.
        public var metrics: String?
    }

    public struct Departure: Codable, Sendable {
        public var nodeId: String
        public var fingerprint: String
        public var name: String?
        public var goneSeconds: Double
    }

    /// The answer to `reclaim`: the ranges this node took over from `nodeId`.
    public struct Reclaimed: Codable, Sendable {
        public var nodeId: String
        public var fingerprint: String
        public var ranges: [String]
        public var forced: Bool
    }

    public struct Lease: Codable, Sendable {
        public var address: String
        public var holderId: String
        public var holderFingerprint: String
        public var holderName: String?
        /// The node that granted it (the owner of the range it came from).
        public var grantorFingerprint: String
        /// The holder's membership status here: alive, suspect, dead, left, or unknown.
        public var state: String
        public var isSelf: Bool
    }

    public struct Leases: Codable, Sendable {
        public var leases: [Lease]
        public var owners: [Owner]
    }

    /// A stretch of free space and who owns it.
    public struct Owner: Codable, Sendable {
        public var range: String
        public var size: UInt64
        public var ownerFingerprint: String
        public var ownerName: String?
    }

    public struct Counters: Codable, Sendable {
        public var datagramsIn: Int
        public var datagramsOut: Int
        public var bytesIn: Int
        public var bytesOut: Int
        public var dropsNotSealedForMesh: Int
        public var dropsMalformed: Int
        public var dropsOther: Int
        public var badSignatures: Int
        public var probes: Int
        public var probesFailed: Int
        public var refutations: Int
        /// Pool grants rejected here: bad signature, or a broken chain (not the grantor's to give).
        public var poolRejectedSignatures: Int
        public var poolRejectedChains: Int
        public var poolConflicts: Int
        /// Reclaims made here (as successor), reclaim votes signed here (own included), reclaims refused here
        /// (too few votes, forged), and reclaims done by hand (--force) seen.
        public var poolReclaims: Int
        public var poolVotes: Int
        public var poolRejectedReclaims: Int
        public var poolForcedReclaims: Int
        /// The data plane: handshakes started (retries included), completed (either role)
        /// and given up; sessions able to send now; packets and payload bytes on sessions.
        public var handshakesInitiated: Int
        public var handshakesCompleted: Int
        public var handshakesFailed: Int
        public var sessions: Int
        public var packetsIn: Int
        public var packetsOut: Int
        public var payloadBytesIn: Int
        public var payloadBytesOut: Int
        /// Data-plane drops by reason: failed authentication, replayed or too old, unknown
        /// receiver index, handshake from a key that is no live member's, wrong length,
        /// on an expired session, staged for a handshake that failed.
        public var dropsBadMAC: Int
        public var dropsReplay: Int
        public var dropsUnknownIndex: Int
        public var dropsNotMember: Int
        public var dropsMalformedSession: Int
        public var dropsExpired: Int
        public var dropsStaged: Int
        /// Messages: accepted for sending, acknowledged by the peer, failed, delivered here;
        /// fragments sent again.
        public var messagesSent: Int
        public var messagesAcknowledged: Int
        public var messagesFailed: Int
        public var messagesReceived: Int
        public var messageRetransmits: Int
        /// The overlay: IP packets read from and written to the TUN device; dropped for an
        /// address no live member leases, for a source address the sending member does not
        /// lease (spoofing), or for not being IPv4.
        public var overlayPacketsFromTun: Int
        public var overlayPacketsToTun: Int
        public var overlayDropsNoRoute: Int
        public var overlayDropsSpoofed: Int
        public var overlayDropsNotIPv4: Int
        /// Received from a member for an address that is not this node's (optional for older nodes).
        public var overlayDropsWrongDestination: Int?
        /// Relaying: datagrams (and bytes) this node carried between two other members,
        /// requests it refused, and this node's own datagrams sent or received through a relay.
        public var relayForwarded: Int
        public var relayForwardedBytes: Int
        public var relayRefused: Int
        public var relaySentThrough: Int
        public var relayReceivedThrough: Int
        /// Datagrams the kernel refused to send (sendto failed: no route, buffer full).
        public var sendErrors: Int?
        /// The allocator (absent from older nodes): balancing rounds that gave space away;
        /// catch-ups after a restart or suspend, and suspends noticed; own leases that
        /// lapsed (cut off from most of the pool); reclaims refused because their voters
        /// held nothing; pool packets whose sender's signature failed; requests from
        /// non-members; REQUESTs for a second lease; grants dropped over a member's limit.
        public var poolDonations: Int?
        /// Merges this node signed (its holdings of free space gathered into one).
        public var poolMerges: Int?
        public var poolCatchUps: Int?
        public var poolResumes: Int?
        public var poolLeasesExpired: Int?
        public var poolWeightlessVotes: Int?
        public var poolBadPacketSignatures: Int?
        public var poolRefusedNonMembers: Int?
        public var poolRefusedSecondLease: Int?
        public var poolRateLimitedGrants: Int?
        /// Pool packets sent and received on a session (through a relay, or asked again).
        public var poolSentOnSessions: Int?
        public var poolReceivedOnSessions: Int?
        /// The checkpoint this node's pool view is built on (0: none yet), and checkpoints
        /// taken on trust (this node held nothing or was catching up), weighed (it could not
        /// fold one but its signers held a quorum in its view) and refused (a forged one, or
        /// one this node could not check).
        public var poolCheckpoint: Int?
        public var poolCheckpointsTrusted: Int?
        public var poolCheckpointsWeighed: Int?
        public var poolCheckpointsRefused: Int?
    }

    /// The answer to `ping`: one round trip, and the path it took.
    public struct Pong: Codable, Sendable {
        public var nodeId: String
        public var fingerprint: String
        public var name: String?
        public var milliseconds: Double
        /// "direct" or "relay" (through `relayName`/`relayFingerprint`).
        public var path: String
        public var relayFingerprint: String?
        public var relayName: String?
    }

    /// The answer to `send`: the peer acknowledged the message.
    public struct Sent: Codable, Sendable {
        public var nodeId: String
        public var fingerprint: String
        public var name: String?
        public var bytes: Int
        public var milliseconds: Double
    }

    /// One line of `listen`: a message as it arrived.
    public struct Message: Codable, Sendable {
        public var from: String
        public var fingerprint: String
        public var name: String?
        /// The sender's overlay address, if it holds one.
        public var address: String?
        /// RFC 3339, UTC.
        public var receivedAt: String
        public var bytes: Int
        /// The message as text, when it is valid UTF-8.
        public var text: String?
        /// The message in base64, when it is not valid UTF-8.
        public var base64: String?
    }

    public struct Peer: Codable, Sendable {
        public var nodeId: String
        public var fingerprint: String
        public var name: String
        public var endpoints: [String]
        public var status: String
        public var incarnation: UInt64
        /// Seconds since a packet from this peer last arrived directly; nil if never.
        public var lastHeardSecondsAgo: Double?
        public var isSelf: Bool
        /// The data path: "direct", "relay" (through `relayName`/`relayFingerprint`), or
        /// absent when no session has been tried; and the round trip of the last handshake
        /// this node made with the peer, in milliseconds.
        public var path: String?
        public var relayFingerprint: String?
        public var relayName: String?
        public var session: Bool?
        public var handshakeRTTMilliseconds: Double?
    }

    public struct Peers: Codable, Sendable {
        public var peers: [Peer]
    }

    public struct ErrorReply: Codable, Sendable {
        public var error: String
    }
}
