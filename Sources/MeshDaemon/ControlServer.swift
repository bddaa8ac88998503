import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Serves the control protocol on a Unix socket, mode 0600.
///
/// Most commands get one reply line. `listen` is a subscription: the connection stays
/// open and gets one line per event until the client closes it.
public final class ControlServer: Sendable {
    /// Starts a subscription: given a function that writes one line to the client, returns
    /// the function that ends it (called when the client goes away).
    public typealias Subscribe = @Sendable (_ write: @escaping @Sendable (Data) -> Void) -> (@Sendable () -> Void)
    /// Bytes of messages queued for one `listen` subscriber that is not reading, at most;
    /// past it, the subscriber is disconnected.
    public static let subscriberQueueLimit = 32 << 20

    /// The longest request line: a `send` of 1 MiB in base64, and some.
    public static let requestLimit = 2 << 20

    let channel: any Channel

    /// Binds `path` (removing a stale socket left by a crash) and answers each request line
    /// with `handler`'s reply.
    public static func start(
        path: String, group: any EventLoopGroup,
        handler: @escaping @Sendable (ControlProtocol.Request) -> EventLoopFuture<Data>,
        subscribe: Subscribe? = nil,
        onSubscriberCut: (@Sendable () -> Void)? = nil
    ) throws -> ControlServer {
        unlink(path)
        let channel = try ServerBootstrap(group: group)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(LineHandler(handler: handler, subscribe: subscribe, onCut: onSubscriberCut))
                }
            }
            .bind(unixDomainSocketPath: path)
            .wait()
        chmod(path, 0o600)
        return ControlServer(channel: channel)
    }

    init(channel: any Channel) { self.channel = channel }

    public func close() { try? channel.close().wait() }

    final class LineHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let handler: @Sendable (ControlProtocol.Request) -> EventLoopFuture<Data>
        let subscribe: Subscribe?
        let onCut: (@Sendable () -> Void)?
        var buffer: [UInt8] = []
        var unsubscribe: (@Sendable () -> Void)?

        init(handler: @escaping @Sendable (ControlProtocol.Request) -> EventLoopFuture<Data>, subscribe: Subscribe?,
             onCut: (@Sendable () -> Void)?)
        {
            self.handler = handler
            self.subscribe = subscribe
            self.onCut = onCut
        }

        func channelInactive(context: ChannelHandlerContext) {
            unsubscribe?()
            unsubscribe = nil
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard unsubscribe == nil else { return }  // a subscriber says nothing more
            buffer.append(contentsOf: unwrapInboundIn(data).readableBytesView)
            guard buffer.count <= ControlServer.requestLimit else { context.close(promise: nil); return }
            guard let nl = buffer.firstIndex(of: 0x0a) else { return }
            let line = Data(buffer[..<nl])
            buffer.removeAll()
            let reply: EventLoopFuture<Data>
            if let req = try? JSONDecoder().decode(ControlProtocol.Request.self, from: line) {
                if req.command == "listen", let subscribe {
                    let channel = context.channel
                    let onCut = self.onCut
                    // A subscriber that stops reading is cut off once this much waits for it,
                    // rather than held in memory without bound. The backlog handed over at
                    // the start (itself bounded) does not count against it.
                    let state = NIOLockedValueBox((queued: 0, replaying: true, cut: false))
                    unsubscribe = subscribe { data in
                        let size = data.count + 1
                        let (counted, cutNow, wasCut) = state.withLockedValue { s -> (Bool, Bool, Bool) in
                            if s.cut { return (false, false, true) }
                            if s.replaying { return (false, false, false) }
                            s.queued += size
                            if s.queued > ControlServer.subscriberQueueLimit {
                                s.cut = true
                                return (true, true, false)
                            }
                            return (true, false, false)
                        }
                        if wasCut { return }
                        if cutNow {
                            onCut?()
                            channel.close(promise: nil)
                            return
                        }
                        var out = channel.allocator.buffer(capacity: size)
                        out.writeBytes(data)
                        out.writeInteger(UInt8(0x0a))
                        let done = channel.writeAndFlush(out)
                        if counted { done.whenComplete { _ in state.withLockedValue { $0.queued -= size } } }
                    }
                    state.withLockedValue { $0.replaying = false }
                    // The backlog's writes may have found the client gone already.
                    if !channel.isActive {
                        unsubscribe?()
                        unsubscribe = nil
                    }
                    return
                }
                reply = handler(req)
            } else {
                reply = context.eventLoop.makeSucceededFuture(
                    (try? JSONEncoder().encode(ControlProtocol.ErrorReply(error: "malformed request"))) ?? Data())
            }
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            reply.hop(to: context.eventLoop).whenComplete { result in
                let context = ctx.value
                var out = context.channel.allocator.buffer(capacity: 256)
                switch result {
                case .success(let d): out.writeBytes(d)
                case .failure(let e): out.writeBytes((try? JSONEncoder().encode(ControlProtocol.ErrorReply(error: "\(e)"))) ?? Data())
                }
                out.writeInteger(UInt8(0x0a))
                context.writeAndFlush(NIOAny(out)).whenComplete { _ in ctx.value.close(promise: nil) }
            }
        }
    }
}

/// The client side, used by `meshwork status` and `peers`: plain blocking socket calls.
public enum ControlClient {
    public enum ClientError: Error, CustomStringConvertible {
        case notRunning(String)
        case io(String)
        case daemon(String)

        public var description: String {
            switch self {
            case .notRunning(let dir):
                return "no meshwork node is running with state directory \(dir) (no control socket answered); start one with 'meshwork up', or pass --state DIR"
            case .io(let m): return "control socket: \(m)"
            case .daemon(let m): return m
            }
        }
    }

    public static func request(_ command: String, target: String? = nil, stateDirectory: String, timeoutSeconds: Int = 5) throws -> Data {
        try request(ControlProtocol.Request(command: command, target: target), stateDirectory: stateDirectory, timeoutSeconds: timeoutSeconds)
    }

    /// Sends `request`, then hands each reply line to `onLine` until the daemon closes the
    /// connection or `onLine` returns false. For `listen`.
    public static func stream(_ request: ControlProtocol.Request, stateDirectory: String, onLine: (Data) throws -> Bool) throws {
        let fd = try connect(stateDirectory, timeoutSeconds: 0)
        defer { close(fd) }
        try write(request, to: fd)
        var pending = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError.io("recv: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return }
            pending.append(contentsOf: chunk[0..<n])
            while let nl = pending.firstIndex(of: 0x0a) {
                let line = pending[pending.startIndex..<nl]
                pending = Data(pending[(nl + 1)...])
                if let e = try? JSONDecoder().decode(ControlProtocol.ErrorReply.self, from: line) { throw ClientError.daemon(e.error) }
                if try !onLine(Data(line)) { return }
            }
        }
    }

    static func write(_ request: ControlProtocol.Request, to fd: Int32) throws {
        let bytes = Array((try JSONEncoder().encode(request)) + Data([0x0a]))
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError.io("send: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
    }

    static func connect(_ stateDirectory: String, timeoutSeconds: Int) throws -> Int32 {
        let path = stateDirectory + "/control.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw ClientError.io("state directory path too long for a Unix socket")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw ClientError.notRunning(stateDirectory)
        }
        return fd
    }

    public static func request(_ request: ControlProtocol.Request, stateDirectory: String, timeoutSeconds: Int = 5) throws -> Data {
        let fd = try connect(stateDirectory, timeoutSeconds: timeoutSeconds)
        defer { close(fd) }
        try write(request, to: fd)
        var out = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError.io("no answer within \(timeoutSeconds)s")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > 16 << 20 { throw ClientError.io("answer too large") }
        }
        if let e = try? JSONDecoder().decode(ControlProtocol.ErrorReply.self, from: out) { throw ClientError.daemon(e.error) }
        return out
    }
}
