import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The node's numbers in Prometheus text format (`up --metrics HOST:PORT`).
///
/// The protocol cores keep their own counters; a scrape reads them once (the same
/// snapshot `meshwork status` shows) and moves the registry's counters by the difference
/// since the last scrape, so `meshwork_*_total` are true Prometheus counters.
public final class MetricsExporter: Sendable {
    let registry = PrometheusCollectorRegistry()
    let counters: [(Counter, @Sendable (ControlProtocol.Status) -> Int)]
    let gauges: [(Gauge, @Sendable (ControlProtocol.Status) -> Double)]
    let last = NIOLockedValueBox<[Int]>([])

    public init(version: String, node: String, mesh: String) {
        let r = registry
        typealias Read = @Sendable (ControlProtocol.Counters) -> Int
        /// One counter, or one per value of `label`: a family shares its name and help.
        func family(_ name: String, _ help: String, _ label: String = "", _ members: [(String, Read)])
            -> [(Counter, @Sendable (ControlProtocol.Status) -> Int)]
        {
            let descriptor = MetricNameDescriptor(namespace: "meshwork", metricName: name, unitName: "total", helpText: help)
            return members.map { value, read in
                (r.makeCounter(descriptor: descriptor, labels: label.isEmpty ? [] : [(label, value)]), { read($0.counters) })
            }
        }
        func counter(_ name: String, _ help: String, _ read: @escaping Read) -> [(Counter, @Sendable (ControlProtocol.Status) -> Int)] {
            family(name, help, "", [("", read)])
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ read: @escaping @Sendable (ControlProtocol.Status) -> Double)
            -> (Gauge, @Sendable (ControlProtocol.Status) -> Double)
        {
            (r.makeGauge(descriptor: MetricNameDescriptor(namespace: "meshwork", metricName: name, unitName: "", helpText: help), labels: labels), read)
        }
        r.makeGauge(descriptor: MetricNameDescriptor(namespace: "meshwork", metricName: "info", unitName: "", helpText: "This node: its version, node ID fingerprint and mesh ID (always 1)."),
                    labels: [("version", version), ("node", node), ("mesh", mesh)]).set(to: 1)

        let cs = [
            family("datagrams", "UDP datagrams received and sent (all kinds).", "direction", [("in", { $0.datagramsIn }), ("out", { $0.datagramsOut })]),
            family("datagram_bytes", "UDP payload bytes received and sent.", "direction", [("in", { $0.bytesIn }), ("out", { $0.bytesOut })]),
            counter("send_errors", "Datagrams the kernel refused to send (no route to the peer, a full socket buffer).") { $0.sendErrors ?? 0 },
            counter("pool_donations", "Balancing rounds in which this node gave space to a member holding less.") { $0.poolDonations ?? 0 },
            counter("pool_merges", "Merges this node signed: its holdings of free space gathered into one.") { $0.poolMerges ?? 0 },
            counter("pool_catch_ups", "Times this node caught up with the mesh after a restart or a suspend.") { $0.poolCatchUps ?? 0 },
            counter("pool_resumes", "Suspends noticed (the boot clock jumped).") { $0.poolResumes ?? 0 },
            counter("pool_leases_expired", "Times this node stopped using its address: cut off from most of the pool for half the lease time.") { $0.poolLeasesExpired ?? 0 },
            counter("pool_weightless_votes", "Reclaims refused because their voters held nothing.") { $0.poolWeightlessVotes ?? 0 },
            counter("pool_bad_packet_signatures", "Pool packets whose sender's signature did not verify.") { $0.poolBadPacketSignatures ?? 0 },
            counter("pool_refused_non_members", "Pool requests from nodes that are not live members.") { $0.poolRefusedNonMembers ?? 0 },
            counter("pool_refused_second_lease", "REQUESTs for a second lease by a member that holds one.") { $0.poolRefusedSecondLease ?? 0 },
            counter("pool_rate_limited_grants", "Grants dropped because their grantor signed more than the per-member limit; taken later.") { $0.poolRateLimitedGrants ?? 0 },
            family("pool_checkpoints_taken", "Checkpoints this node could not fold itself, taken by how it checked them.", "how",
                   [("trusted", { $0.poolCheckpointsTrusted ?? 0 }), ("weighed", { $0.poolCheckpointsWeighed ?? 0 })]),
            counter("pool_checkpoints_refused", "Checkpoints refused: forged, malformed, or not checkable by this node.") { $0.poolCheckpointsRefused ?? 0 },
            family("pool_on_sessions", "Pool packets carried on a session (through a relay, or asked again) rather than in their own datagrams.", "direction",
                   [("in", { $0.poolReceivedOnSessions ?? 0 }), ("out", { $0.poolSentOnSessions ?? 0 })]),
            family("handshakes", "Noise handshakes by result.", "result",
                   [("initiated", { $0.handshakesInitiated }), ("completed", { $0.handshakesCompleted }), ("failed", { $0.handshakesFailed })]),
            family("packets", "Session transport packets opened and sealed.", "direction", [("in", { $0.packetsIn }), ("out", { $0.packetsOut })]),
            family("payload_bytes", "Plaintext bytes carried by sessions.", "direction", [("in", { $0.payloadBytesIn }), ("out", { $0.payloadBytesOut })]),
            family("overlay_packets", "IP packets read from and written to the TUN device.", "direction",
                   [("from_tun", { $0.overlayPacketsFromTun }), ("to_tun", { $0.overlayPacketsToTun })]),
            family("relay_packets", "Relayed datagrams: forwarded for others, sent and received through a relay.", "role",
                   [("forwarded", { $0.relayForwarded }), ("sent_through", { $0.relaySentThrough }), ("received_through", { $0.relayReceivedThrough })]),
            counter("relay_forwarded_bytes", "Bytes forwarded for other members.") { $0.relayForwardedBytes },
            counter("relay_refused", "Relay requests refused (target not reached directly, nesting, loops).") { $0.relayRefused },
            family("messages", "Application messages (meshwork send / listen).", "event",
                   [("sent", { $0.messagesSent }), ("acknowledged", { $0.messagesAcknowledged }), ("failed", { $0.messagesFailed }),
                    ("received", { $0.messagesReceived })]),
            counter("message_retransmits", "Message fragments sent again.") { $0.messageRetransmits },
            family("gossip_probes", "SWIM probes sent, and those that failed.", "result", [("sent", { $0.probes }), ("failed", { $0.probesFailed })]),
            counter("gossip_refutations", "Suspicions of this node that it refuted.") { $0.refutations },
            counter("pool_conflicts", "Conflicting pool grants resolved.") { $0.poolConflicts },
            counter("pool_reclaims", "Pool space reclaimed from departed nodes.") { $0.poolReclaims },
            counter("pool_votes", "Reclaim votes counted here (this node's own included).") { $0.poolVotes },
            counter("pool_forced_reclaims", "Forced reclaims ('meshwork pool reclaim --force', signed by the admin key) accepted.") { $0.poolForcedReclaims },
            family("drops", "Packets dropped, by reason.", "reason", [
                ("not_sealed_for_mesh", { $0.dropsNotSealedForMesh }), ("malformed", { $0.dropsMalformed }), ("other", { $0.dropsOther }),
                ("bad_signature", { $0.badSignatures }), ("pool_bad_signature", { $0.poolRejectedSignatures }),
                ("pool_bad_chain", { $0.poolRejectedChains }), ("pool_bad_reclaim", { $0.poolRejectedReclaims }),
                ("bad_mac", { $0.dropsBadMAC }), ("replay", { $0.dropsReplay }), ("unknown_index", { $0.dropsUnknownIndex }),
                ("not_member", { $0.dropsNotMember }), ("malformed_session", { $0.dropsMalformedSession }), ("expired", { $0.dropsExpired }),
                ("staged_overflow", { $0.dropsStaged }), ("no_route", { $0.overlayDropsNoRoute }), ("spoofed_source", { $0.overlayDropsSpoofed }),
                ("not_ipv4", { $0.overlayDropsNotIPv4 }), ("wrong_destination", { $0.overlayDropsWrongDestination ?? 0 }),
            ]),
        ].flatMap { $0 }
        counters = cs
        gauges = [
            gauge("up_seconds", "Seconds since this node started.") { $0.uptimeSeconds },
            gauge("pool_checkpoint", "The checkpoint this node's pool view is built on (0: none yet).") { Double($0.counters.poolCheckpoint ?? 0) },
            gauge("members", "Members by status (alive includes this node).", [("status", "alive")]) { Double($0.members.alive) },
            gauge("members", "Members by status (alive includes this node).", [("status", "suspect")]) { Double($0.members.suspect) },
            gauge("members", "Members by status (alive includes this node).", [("status", "dead")]) { Double($0.members.dead) },
            gauge("members", "Members by status (alive includes this node).", [("status", "left")]) { Double($0.members.left) },
            gauge("leases", "Leases in this node's view of the pool.") { Double($0.poolLeases ?? 0) },
            gauge("pool_addresses", "Usable addresses in the pool.") { Double($0.poolAddresses ?? 0) },
            gauge("pool_free_addresses", "Usable addresses not leased to anyone.") { Double($0.poolFreeAddresses ?? 0) },
            gauge("pool_owned_addresses", "Addresses in the free ranges this node owns.") { Double($0.poolOwnedAddresses ?? 0) },
            gauge("address_leased", "1 when this node holds an overlay address.") { $0.address == nil ? 0 : 1 },
            gauge("sessions", "Live Noise sessions.") { Double($0.counters.sessions) },
            gauge("pool_fenced", "1 when this node does not grant: fenced (live members do not hold most of the pool) or catching up.") { $0.poolFenced ? 1 : 0 },
        ]
    }

    /// Moves the registry to `status` and renders it.
    public func render(_ status: ControlProtocol.Status) -> [UInt8] {
        last.withLockedValue { last in
            if last.count != counters.count { last = Array(repeating: 0, count: counters.count) }
            for (i, (c, read)) in counters.enumerated() {
                let now = read(status)
                if now > last[i] { c.increment(by: Int64(now - last[i])) }
                last[i] = max(now, last[i])
            }
        }
        for (g, read) in gauges { g.set(to: read(status)) }
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }
}

/// A minimal HTTP/1.1 server for `GET /metrics` (plain text; no TLS, no authentication).
public final class MetricsServer: Sendable {
    let channel: any Channel
    public var localAddress: SocketAddress? { channel.localAddress }

    init(channel: any Channel) { self.channel = channel }

    /// Binds `host:port` and answers each scrape with `render()` (called off the event loop's
    /// caller, on whatever loop its future completes).
    public static func start(host: String, port: Int, group: any EventLoopGroup,
                             render: @escaping @Sendable () -> EventLoopFuture<[UInt8]>) throws -> MetricsServer
    {
        let open = NIOLockedValueBox(0)
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                // A scraper needs one connection; a few more are allowed, idle ones are closed.
                let count = open.withLockedValue { $0 += 1; return $0 }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                guard count <= maxConnections else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Handler(render: render))
                }
            }
            .bind(host: host, port: port).wait()
        return MetricsServer(channel: channel)
    }

    public func close() { try? channel.close().wait() }

    /// Connections open at once, at most; more are closed at once.
    static let maxConnections = 16
    /// A connection with no traffic either way for this long is closed.
    static let idleTimeout = TimeAmount.seconds(30)

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let render: @Sendable () -> EventLoopFuture<[UInt8]>
        var head: HTTPRequestHead?

        init(render: @escaping @Sendable () -> EventLoopFuture<[UInt8]>) { self.render = render }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent {
                context.close(promise: nil)
            } else {
                context.fireUserInboundEventTriggered(event)
            }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let h = head else { return }
                head = nil
                let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
                let keepAlive = h.isKeepAlive
                let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
                let me = NIOLoopBound(self, eventLoop: context.eventLoop)
                guard h.method == .GET || h.method == .HEAD else {
                    respond(context, .methodNotAllowed, Array("only GET /metrics is served\n".utf8), keepAlive: keepAlive, extra: [("Allow", "GET, HEAD")])
                    return
                }
                guard path == "/metrics" || path == "/" else {
                    respond(context, .notFound, Array("not found: the metrics are at /metrics\n".utf8), keepAlive: keepAlive)
                    return
                }
                let headOnly = h.method == .HEAD
                render().hop(to: context.eventLoop).whenComplete { result in
                    switch result {
                    case .success(let body):
                        me.value.respond(ctx.value, .ok, body, keepAlive: keepAlive, contentType: "text/plain; version=0.0.4; charset=utf-8", headOnly: headOnly)
                    case .failure(let e):
                        me.value.respond(ctx.value, .serviceUnavailable, Array("node not answering: \(e)\n".utf8), keepAlive: false)
                    }
                }
            }
        }

        func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8], keepAlive: Bool,
                     contentType: String = "text/plain; charset=utf-8", extra: [(String, String)] = [], headOnly: Bool = false)
        {
            var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.count)")] + extra)
            headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            if !headOnly {
                var buffer = context.channel.allocator.buffer(capacity: body.count)
                buffer.writeBytes(body)
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}
