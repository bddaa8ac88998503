import Foundation
import Logging
import MeshCore
import MeshGossip
import MeshNode
import MeshPool
import MeshTunnel
import NIOCore
import NIOPosix

/// Runs one `MeshNode` on real UDP: the thin loop around the sans-I/O core.
///
/// Everything the node does happens on one event loop: datagrams in, timer ticks, and
/// commands. After each input the runner sends what the node asked for and re-arms one
/// timer for `node.nextDeadline`. The node's clock is CLOCK_BOOTTIME (suspend counts;
/// BootClock.swift); timers are relative delays on the event loop.
public final class NodeRunner: @unchecked Sendable {
    // All mutable state is touched only on `loop`.
    public let loop: any EventLoop
    private var node: MeshNode!
    private var channel: (any Channel)?
    private var timer: Scheduled<Void>?
    private var timerAt: Instant = .distantFuture
    private let origin = BootClock.nanoseconds()
    private let logger: Logger
    private let onEvent: @Sendable (MembershipEvent, Gossip) -> Void
    /// Called for every pool event, on the event loop.
    public var onPoolEvent: (@Sendable (PoolEvent) -> Void)?
    /// Makes grants, the grant sequence number and votes durable (write, fsync). Called off
    /// the event loop, on one serial queue, in the order the node asked; every output the
    /// node makes after asking waits until the write is done, and if it throws none of them
    /// is sent (the node stops). The event loop goes on reading and working meanwhile.
    public var onPersist: (@Sendable ([Grant], UInt64, [Bytes32: NodeID], PoolCheckpoint?) throws -> Void)?
    /// Writes for `onPersist`, one at a time, in order.
    private let persistQueue = DispatchQueue(label: "meshwork.pool-persist")
    /// Persists asked for and persists done (numbered from 1; done in order).
    private var persistsAsked = 0
    private var persistsDone = 0
    /// Outputs made while a persist was under way, each with the number of the last persist
    /// asked before it: sent once that one is done.
    private var held: [(after: Int, output: NodeOutput)] = []
    private var heldStart = 0
    /// Called once if the node must stop: its state could not be made durable, so going on
    /// could hand out an address twice. The runner has already closed its socket.
    public var onFatal: (@Sendable (String) -> Void)?
    public private(set) var localAddress: SocketAddress?
    /// Called for every message received, on the event loop (besides `messages`).
    public var onMessage: (@Sendable (ReceivedMessage) -> Void)?
    /// Called when a session with a peer is established, on the event loop.
    public var onSession: (@Sendable (NodeID) -> Void)?
    /// Messages received, in order per sender. Holds up to 1,024 unread ones (then drops the
    /// oldest); off (`streamMessages = false`) for a program that takes them by `onMessage`.
    public let messages: AsyncStream<ReceivedMessage>
    public var streamMessages = true
    private let messagesContinuation: AsyncStream<ReceivedMessage>.Continuation
    private var pendingSends: [MessageID: EventLoopPromise<Void>] = [:]
    private var readsPending = false
    private var pendingPings: [UInt64: (peer: NodeID, sentAt: Instant, promise: EventLoopPromise<Span>)] = [:]
    private var nextPing: UInt64 = 1
    /// The UDP socket's descriptor (owned by its channel), for sending.
    private var udpFD: Int32 = -1
    /// Datagrams the kernel refused to send (no route, buffer full): dropped, as UDP may.
    public private(set) var sendErrors = 0
    /// Set once the node is stopping: a socket closing then is expected.
    private var closing = false
    private var tun: TunDevice?

    /// Carries IP packets between `device` and the overlay from now on.
    public func attach(_ device: TunDevice) {
        loop.execute { self.tun = device }
        device.startReading { [weak self] packet in
            guard let self else { return }
            self.loop.execute {
                guard self.node != nil, self.channel != nil else { return }
                self.deliver(self.node.routePacket(packet, now: self.now))
            }
        }
    }

    public init(loop: any EventLoop, logger: Logger, onEvent: @escaping @Sendable (MembershipEvent, Gossip) -> Void) {
        self.loop = loop
        self.logger = logger
        self.onEvent = onEvent
        (messages, messagesContinuation) = AsyncStream.makeStream(of: ReceivedMessage.self, bufferingPolicy: .bufferingNewest(1024))
    }

    /// The node's clock: nanoseconds since this runner was made.
    public var clock: Instant { now }

    /// Sends `bytes` to the member `peer` over an encrypted session (made on demand); the
    /// future succeeds when the peer acknowledged receipt, and fails with a `SendFailure`.
    public func send(to peer: NodeID, _ bytes: [UInt8], timeout: TimeAmount) -> EventLoopFuture<Void> {
        loop.flatSubmit {
            let promise = self.loop.makePromise(of: Void.self)
            guard self.node != nil, self.channel != nil else {
                promise.fail(SendFailure.stopped)
                return promise.futureResult
            }
            let deadline = self.now + Span(nanoseconds: timeout.nanoseconds)
            let (result, outputs) = self.node.sendMessage(bytes, to: peer, deadline: deadline, now: self.now)
            switch result {
            case .success(let id): self.pendingSends[id] = promise
            case .failure(.notAMember): promise.fail(SendFailure.notAMember)
            case .failure(.tooLarge(let limit)): promise.fail(SendFailure.tooLarge(limit: limit))
            case .failure(.queueFull(let limit)): promise.fail(SendFailure.queueFull(limit: limit))
            }
            self.deliver(outputs)
            return promise.futureResult
        }
    }

    /// An overlay-level ping: the round trip to `peer`'s node over its session (made on
    /// demand: the first one includes the handshake). Fails with `SendFailure.timedOut`.
    public func ping(_ peer: NodeID, timeout: TimeAmount) -> EventLoopFuture<Span> {
        loop.flatSubmit {
            let promise = self.loop.makePromise(of: Span.self)
            guard self.node != nil, self.channel != nil else {
                promise.fail(SendFailure.stopped)
                return promise.futureResult
            }
            let id = self.nextPing
            self.nextPing += 1
            let (member, outputs) = self.node.ping(peer, id: id, now: self.now)
            guard member else {
                promise.fail(SendFailure.notAMember)
                return promise.futureResult
            }
            self.pendingPings[id] = (peer, self.now, promise)
            self.deliver(outputs)
            self.loop.scheduleTask(in: timeout) {
                self.pendingPings.removeValue(forKey: id)?.promise.fail(SendFailure.timedOut)
            }
            return promise.futureResult
        }
    }

    /// `send` for Swift concurrency: returns once the peer acknowledged receipt.
    public func send(to peer: NodeID, bytes: [UInt8], timeout: Duration = .seconds(10)) async throws {
        let c = timeout.components
        try await send(to: peer, bytes, timeout: .nanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)).get()
    }

    var now: Instant { Instant(nanoseconds: BootClock.nanoseconds() - origin) }

    /// Binds the UDP socket, then makes the node (it needs the bound address for its record)
    /// and joins through `seeds`, if any.
    public func start(
        host: String, port: Int, seeds: [Endpoint], makeNode: @escaping @Sendable (SocketAddress, Instant) -> MeshNode
    ) -> EventLoopFuture<SocketAddress> {
        let opened: EventLoopFuture<any Channel>
        do {
            let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
            opened = open(address)
        } catch {
            return loop.makeFailedFuture(error)
        }
        return opened.flatMapThrowing { channel in
            self.loop.preconditionInEventLoop()
            self.adopt(channel)
            self.node = makeNode(channel.localAddress!, self.now)
            self.deliver(self.node.join(seeds: seeds, now: self.now))
            return channel.localAddress!
        }
    }

    /// The socket: made and bound here, read by NIO, written by `sendto` here. Sending
    /// ourselves keeps a send error (ENETUNREACH when a link is down, EPERM from a firewall)
    /// a dropped datagram: NIO would close the channel on those.
    private func open(_ address: SocketAddress) -> EventLoopFuture<any Channel> {
        let family = address.protocol.rawValue
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return loop.makeFailedFuture(IOError(errnoCode: errno, reason: "socket")) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.withSockAddr { sa, len in Glibc.bind(fd, sa, socklen_t(len)) }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            return loop.makeFailedFuture(IOError(errnoCode: e, reason: "bind"))
        }
        return makeBootstrap().withBoundSocket(fd).map { channel in
            self.udpFD = fd
            return channel
        }
    }

    private func makeBootstrap() -> DatagramBootstrap {
        DatagramBootstrap(group: loop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Inbound(runner: self))
                }
            }
    }

    /// Takes `channel` as the node's socket, and watches it: NIO closes a datagram channel
    /// on some send errors (a link going down gives ENETUNREACH), and a node must outlive
    /// its link, so a socket closed while the node runs is opened again on the same address.
    private func adopt(_ channel: any Channel) {
        Self.enlargeBuffers(channel)
        self.channel = channel
        localAddress = channel.localAddress
        channel.closeFuture.whenComplete { [weak self] _ in
            guard let self else { return }
            self.loop.execute { self.socketClosed(channel) }
        }
    }

    private func socketClosed(_ closed: any Channel) {
        guard !closing, let current = channel, current === closed, let address = localAddress else { return }
        channel = nil
        logger.warning("the UDP socket closed under the node (a network error); opening it again", metadata: ["listen": "\(address)"])
        reopen(address, after: .milliseconds(200))
    }

    private func reopen(_ address: SocketAddress, after delay: TimeAmount) {
        loop.scheduleTask(in: delay) { [weak self] in
            guard let self, !self.closing, self.channel == nil else { return }
            self.open(address).whenComplete { result in
                switch result {
                case .success(let c):
                    guard !self.closing else { c.close(promise: nil); return }
                    self.adopt(c)
                    self.logger.notice("UDP socket open again", metadata: ["listen": "\(address)"])
                    self.timerAt = .distantFuture
                    self.arm()
                case .failure(let e):
                    self.logger.debug("cannot open the UDP socket again yet: \(e)")
                    self.reopen(address, after: .seconds(1))
                }
            }
        }
    }

    /// Announces departure (after releasing the address, with `release`), lets gossip carry
    /// it for `linger`, then closes the socket. Releasing, the linger starts once the pool has
    /// given its space away (`PoolAgent.releasePending`), or after `releaseWaitMax`.
    public func leave(linger: TimeAmount, release: Bool = false, releaseWaitMax: TimeAmount = .seconds(8)) -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.deliver(self.node.leave(now: self.now, release: release))
            let giveUpAt = NIODeadline.now() + releaseWaitMax
            func waitThenLinger() -> EventLoopFuture<Void> {
                if release, self.node.pool?.releasePending == true, NIODeadline.now() < giveUpAt {
                    return self.loop.scheduleTask(in: .milliseconds(100)) {}.futureResult.flatMap { waitThenLinger() }
                }
                return self.loop.scheduleTask(in: linger) {}.futureResult.flatMap { self.close() }
            }
            return waitThenLinger()
        }
    }

    public func close() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.closing = true
            self.timer?.cancel()
            self.timer = nil
            for (_, p) in self.pendingSends { p.fail(SendFailure.stopped) }
            self.pendingSends = [:]
            self.messagesContinuation.finish()
            guard let c = self.channel else { return self.loop.makeSucceededVoidFuture() }
            self.channel = nil
            return c.close().recover { _ in }
        }
    }

    /// Runs a command on the node on its event loop and acts on what it outputs.
    public func perform<T: Sendable>(_ body: @escaping @Sendable (inout MeshNode, Instant) -> (T, [NodeOutput])) -> EventLoopFuture<T> {
        loop.submit {
            let (value, outputs) = body(&self.node, self.now)
            self.deliver(outputs)
            return value
        }
    }

    /// Runs `body` with the node now; only on the event loop (from a callback of this runner).
    public func inspectNow<T>(_ body: (MeshNode) -> T) -> T {
        loop.preconditionInEventLoop()
        return body(node)
    }

    /// Runs `body` with the node on its event loop (for status queries).
    public func inspect<T: Sendable>(_ body: @escaping @Sendable (MeshNode, Instant) -> T) -> EventLoopFuture<T> {
        loop.submit { body(self.node, self.now) }
    }

    fileprivate func received(_ envelope: AddressedEnvelope<ByteBuffer>) {
        guard node != nil, let source = Endpoint(envelope.remoteAddress) else { return }
        let bytes = Array(envelope.data.readableBytesView)
        deliver(node.receive(datagram: bytes, from: source, now: now))
        readsPending = true
    }

    /// The end of one read burst: what the batch calls for (one acknowledgement per peer).
    fileprivate func readComplete() {
        guard node != nil, readsPending else { return }
        readsPending = false
        deliver(node.endOfBatch(now: now))
    }

    private func tick() {
        timer = nil
        timerAt = .distantFuture
        deliver(node.tick(now: now))
    }

    /// Acts on the node's outputs (datagrams go out at once, by `sendto`), except that what
    /// follows a persist waits for it (`held`).
    private func deliver(_ outputs: [NodeOutput]) {
        for o in outputs {
            if case .persist(let grants, let seq, let votes, let checkpoint) = o {
                persist(grants, seq: seq, votes: votes, checkpoint: checkpoint)
            } else if persistsAsked > persistsDone {
                held.append((persistsAsked, o))
            } else {
                act(o)
            }
        }
        arm()
    }

    /// Hands a write to the persist queue; its completion comes back to the event loop.
    private func persist(_ grants: [Grant], seq: UInt64, votes: [Bytes32: NodeID], checkpoint: PoolCheckpoint?) {
        guard let onPersist, !closing else { return }
        persistsAsked += 1
        let number = persistsAsked
        persistQueue.async { [self] in
            let failure: (any Error)?
            do { try onPersist(grants, seq, votes, checkpoint); failure = nil } catch { failure = error }
            loop.execute { self.persisted(number, failure: failure) }
        }
    }

    /// Persist `number` is done: sends what waited for it, or stops the node if it failed.
    private func persisted(_ number: Int, failure: (any Error)?) {
        guard !closing || failure == nil else { return }
        if let failure {
            // Nothing after it may leave: not the ACK, not a later push of these grants.
            let why = "could not make pool grants durable (\(failure)); stopping so that no address can be handed out twice"
            logger.critical("\(why)")
            closing = true
            held = []
            heldStart = 0
            timer?.cancel()
            timer = nil
            channel?.close(promise: nil)
            channel = nil
            onFatal?(why)
            return
        }
        persistsDone = number
        while heldStart < held.count, held[heldStart].after <= number {
            act(held[heldStart].output)
            heldStart += 1
        }
        if heldStart == held.count {
            held.removeAll(keepingCapacity: true)
            heldStart = 0
        }
        arm()
    }

    /// Waits (off the event loop) until every write asked of `onPersist` so far is done.
    public func waitForPersists() {
        persistQueue.sync {}
    }

    private func act(_ o: NodeOutput) {
        switch o {
        case .datagram(let bytes, let to):
            guard channel != nil, udpFD >= 0 else { return }
            let fd = udpFD
            let sent = to.withSockAddr { sa, len in
                bytes.withUnsafeBytes { Glibc.sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, len) }
            }
            if sent < 0 { sendErrors += 1 }
        case .event(let e):
            onEvent(e, node.gossip)
        case .pool(let e):
            onPoolEvent?(e)
        case .message(let from, let bytes):
            let m = ReceivedMessage(from: from, bytes: bytes, receivedAt: Date())
            onMessage?(m)
            if streamMessages { messagesContinuation.yield(m) }
        case .messageAcknowledged(let id):
            pendingSends.removeValue(forKey: id)?.succeed(())
        case .messageFailed(let id, let why):
            pendingSends.removeValue(forKey: id)?.fail(why == .timedOut ? SendFailure.timedOut : SendFailure.unreachable)
        case .sessionEstablished(let peer):
            onSession?(peer)
        case .packet(let ip):
            tun?.write(ip)
        case .pong(let from, let id):
            if let p = pendingPings[id], p.peer == from {
                pendingPings[id] = nil
                p.promise.succeed(now - p.sentAt)
            }
        case .persist:
            break  // deliver hands these to persist
        }
    }

    /// Socket buffers of 4 MiB each way, so that a window of message fragments (or a burst
    /// of gossip) is not dropped by the kernel: the *FORCE options (root) pass the sysctl
    /// caps; without root the kernel caps the plain ones at net.core.[rw]mem_max.
    static func enlargeBuffers(_ channel: any Channel) {
        let size: SocketOptionValue = 4 << 20
        let sync = channel.syncOptions
        for (force, plain) in [(SO_RCVBUFFORCE, SO_RCVBUF), (SO_SNDBUFFORCE, SO_SNDBUF)] {
            let level = SocketOptionLevel(SOL_SOCKET)
            if (try? sync?.setOption(ChannelOptions.Types.SocketOption(level: level, name: SocketOptionName(force)), value: size)) == nil {
                try? sync?.setOption(ChannelOptions.Types.SocketOption(level: level, name: SocketOptionName(plain)), value: size)
            }
        }
    }

    private func arm() {
        guard channel != nil else { return }
        let at = node.nextDeadline
        guard at < timerAt else { return }
        timer?.cancel()
        timerAt = at
        let delay = max(0, at.nanoseconds - now.nanoseconds)
        timer = loop.scheduleTask(in: .nanoseconds(delay)) { [weak self] in self?.tick() }
    }

    private final class Inbound: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let runner: NodeRunner
        init(runner: NodeRunner) { self.runner = runner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            runner.received(unwrapInboundIn(data))
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            runner.readComplete()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // ICMP port unreachable and the like surface here: a peer went away. Not fatal.
            runner.logger.debug("udp error: \(error)")
        }
    }
}

/// A message from a member, as the node hands it up.
public struct ReceivedMessage: Sendable {
    public let from: NodeID
    public let bytes: [UInt8]
    public let receivedAt: Date
}

/// Why a message was not acknowledged.
public enum SendFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer is not a live member here.
    case notAMember
    case tooLarge(limit: Int)
    case queueFull(limit: Int)
    /// No acknowledgement before the deadline (a session may or may not have been made).
    case timedOut
    /// No session could be made, or the peer stopped being a live member.
    case unreachable
    /// This node stopped.
    case stopped

    public var description: String {
        switch self {
        case .notAMember: return "not a live member of the mesh"
        case .tooLarge(let l): return "message too large: the limit is \(l) bytes"
        case .queueFull(let l): return "too much unacknowledged data for this peer (limit \(l) bytes); try again later"
        case .timedOut: return "timed out waiting for the acknowledgement"
        case .unreachable: return "unreachable: no session could be made"
        case .stopped: return "the node stopped"
        }
    }
}
