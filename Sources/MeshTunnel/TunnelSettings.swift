import MeshCore

/// The session timers and limits, named and valued as WireGuard names them (the
/// whitepaper, §6.1; wireguard-go `device/constants.go`). docs/handshake.md has the table
/// and what each one does here. Tests shorten them; the daemon uses the defaults.
public struct TunnelSettings: Sendable {
    /// Start a new handshake once a session has sent this many messages.
    public var rekeyAfterMessages: UInt64 = 1 << 60
    /// Never send or accept on a session past this many messages (2^64 − 2^13 − 1).
    public var rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)
    /// The initiator of a session starts a new handshake when it sends on a session this old.
    public var rekeyAfterTime: Span = .seconds(120)
    /// Never send or accept on a session this old.
    public var rejectAfterTime: Span = .seconds(180)
    /// Give up a handshake (and drop what waits for it) after trying this long.
    public var rekeyAttemptTime: Span = .seconds(90)
    /// Resend an unanswered handshake initiation after this, plus jitter.
    public var rekeyTimeout: Span = .seconds(5)
    /// The jitter added to each retry: uniform in [0, this).
    public var rekeyTimeoutJitterMax: Span = .milliseconds(334)
    /// Send an empty keepalive when data came in and nothing went out for this long; and
    /// start a new handshake when data went out and nothing came back for this plus
    /// `rekeyTimeout`.
    public var keepaliveTimeout: Span = .seconds(10)
    /// Packets waiting for a session, per peer (wireguard-go: MaxStagedPackets 128).
    public var maxStagedPackets = 256

    public init() {}
}
