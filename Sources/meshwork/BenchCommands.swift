import ArgumentParser
import Foundation
import Logging
import MeshCore
import MeshCrypto
import MeshDaemon
import MeshTransport
import NIOConcurrencyHelpers
import NIOCore

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Meshwork against a baseline measured in the same run.",
        subcommands: [BenchMessages.self, UDPSink.self]
    )
}

/// Messages between two processes on loopback, beside plain UDP between two processes.
struct BenchMessages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "messages",
        abstract: "Messages per second and MB/s between two processes on 127.0.0.1, beside plain UDP.",
        discussion: """
            Baseline: this process sends COUNT UDP datagrams of SIZE bytes (a larger SIZE as several of 65,507) as fast as it can \
            to a second process that counts them (plain UDP has no acknowledgement: what is \
            lost is reported). Meshwork: this process runs a node, a second process runs \
            'meshwork up'; after one warm-up message (the handshake), this node sends COUNT \
            messages of SIZE bytes through `send` with up to --in-flight unacknowledged, \
            each encrypted, acknowledged and delivered in order to the other node's daemon. \
            The clock runs from the first send to the last datagram received (UDP) or the \
            last acknowledgement (Meshwork). Build with -c release for numbers worth keeping.

            Example:
              swift build -c release && .build/release/meshwork bench messages --count 50000 --size 1000
            """
    )

    @Option(name: .long, help: "Messages (and datagrams) to send.") var count = 20_000
    @Option(name: .long, help: "Bytes per message (1 to 1,048,576).") var size = 1000
    @Option(name: .long, help: "Meshwork messages sent and not yet acknowledged, at most.") var inFlight = 256
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        guard count >= 1, count <= 10_000_000 else { throw ValidationError("--count: use 1 to 10000000") }
        guard size >= 1, size <= 1 << 20 else { throw ValidationError("--size: use 1 to 1048576") }
        guard inFlight >= 1, inFlight <= 100_000 else { throw ValidationError("--in-flight: use 1 to 100000") }
    }

    struct Row: Encodable {
        let path: String
        let sent: Int
        let delivered: Int
        let seconds: Double
        let messagesPerSecond: Double
        let megabytesPerSecond: Double

        init(path: String, sent: Int, delivered: Int, seconds: Double, size: Int) {
            self.path = path
            self.sent = sent
            self.delivered = delivered
            self.seconds = seconds
            messagesPerSecond = seconds > 0 ? Double(delivered) / seconds : 0
            megabytesPerSecond = messagesPerSecond * Double(size) / 1e6
        }
    }

    static var executable: String { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0] }

    func run() throws {
        let dir = NSTemporaryDirectory() + "meshwork-bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        if !json { printErr("plain UDP: \(count) datagrams of \(size) bytes...") }
        let udp = try plainUDP()
        if !json { printErr("Meshwork: \(count) messages of \(size) bytes...") }
        let mesh = try meshwork(dir: dir)
        let rows = [udp, mesh]
        if json {
            struct Out: Encodable { let count: Int; let size: Int; let results: [Row]; let ratio: Double }
            try printJSON(Out(count: count, size: size, results: rows, ratio: udp.messagesPerSecond > 0 ? mesh.messagesPerSecond / udp.messagesPerSecond : 0))
            return
        }
        print("Loopback, two processes, \(count) × \(size) bytes")
        func pad(_ t: String, _ w: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, w - t.count))
            return left ? t + fill : fill + t
        }
        print(pad("path", 38, left: true) + pad("delivered", 10) + pad("seconds", 10) + pad("messages/s", 12) + pad("MB/s", 9))
        for r in rows {
            print(pad(r.path, 38, left: true) + pad("\(r.delivered)", 10) + pad(String(format: "%.3f", r.seconds), 10)
                + pad(String(format: "%.0f", r.messagesPerSecond), 12) + pad(String(format: "%.1f", r.megabytesPerSecond), 9))
        }
        if udp.messagesPerSecond > 0 {
            print(String(format: "Meshwork / plain UDP: %.2f (messages/s)", mesh.messagesPerSecond / udp.messagesPerSecond))
        }
    }

    // MARK: Plain UDP

    /// UDP's largest datagram: a larger message goes as several.
    static let udpLimit = 65_507

    func plainUDP() throws -> Row {
        let chunk = min(size, Self.udpLimit)
        let perMessage = (size + chunk - 1) / chunk
        let datagrams = count * perMessage
        let sink = Process()
        sink.executableURL = URL(fileURLWithPath: Self.executable)
        sink.arguments = ["bench", "udp-sink", "--count", String(datagrams)]
        let out = Pipe()
        sink.standardOutput = out
        sink.standardInput = FileHandle.nullDevice
        try sink.run()
        let reader = LineReader(out.fileHandleForReading)
        guard let first = reader.next(), first.hasPrefix("PORT "), let port = UInt16(first.dropFirst(5)) else {
            throw CLIError("the UDP sink did not start")
        }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw CLIError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buf: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let payload = [UInt8](repeating: 0x5a, count: chunk)
        var sent = 0
        withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                for _ in 0..<datagrams where sendto(fd, payload, payload.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) == payload.count {
                    sent += 1
                }
            }
        }
        guard let last = reader.next(), let data = last.data(using: .utf8),
              let result = try? JSONDecoder().decode(UDPSink.Result.self, from: data) else {
            throw CLIError("the UDP sink gave no result")
        }
        sink.waitUntilExit()
        // A message counts as delivered per `perMessage` datagrams received.
        let path = perMessage == 1 ? "plain UDP (no crypto, no acks)" : "plain UDP (\(perMessage) datagrams a message)"
        return Row(path: path, sent: sent / perMessage, delivered: result.received / perMessage, seconds: result.seconds, size: size)
    }

    // MARK: Meshwork

    func meshwork(dir: String) throws -> Row {
        let create = Process()
        create.executableURL = URL(fileURLWithPath: Self.executable)
        create.arguments = ["mesh", "create", "--name", "bench", "--pool", "100.99.0.0/24", "--key", dir + "/a/identity.key", "--out", dir + "/bench.mesh"]
        create.standardError = FileHandle.nullDevice
        create.standardOutput = FileHandle.nullDevice
        try create.run()
        create.waitUntilExit()
        guard create.terminationStatus == 0 else { throw CLIError("could not create the benchmark mesh") }
        let token = try KeyStore.loadToken(dir + "/bench.mesh")

        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let config = Daemon.Config(token: token, keyPath: nil, state: StatePaths(directory: dir + "/a"), listenHost: "127.0.0.1",
                                   listenPort: 0, peers: [], name: "bench-a")
        let node = try EmbeddedNode.start(config, logger: logger, timeout: 20)
        let runner = node.runner
        guard let port = runner.localAddress?.port else { throw CLIError("the local node did not start") }
        defer { node.stop() }

        let peer = Process()
        peer.executableURL = URL(fileURLWithPath: Self.executable)
        peer.arguments = ["up", "--mesh", dir + "/bench.mesh", "--state", dir + "/b", "--listen", "127.0.0.1:0", "--peer", "127.0.0.1:\(port)",
                          "--no-tun", "--name", "bench-b", "--log-level", "error"]
        peer.standardInput = FileHandle.nullDevice
        try peer.run()
        defer {
            kill(peer.processIdentifier, SIGKILL)
            peer.waitUntilExit()
        }

        // Wait for the other node to be a member here.
        var target: NodeID?
        let joinDeadline = Date().addingTimeInterval(20)
        while target == nil, Date() < joinDeadline {
            target = try runner.inspect { node, _ in node.gossip.members.values.first { $0.status == .alive }?.node }.wait()
            if target == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        guard let target else { throw CLIError("the second node did not join") }
        try runner.send(to: target, [0], timeout: .seconds(20)).wait()  // the handshake, outside the clock

        let payload = [UInt8](repeating: 0x5a, count: size)
        let window = DispatchSemaphore(value: inFlight)
        let done = DispatchGroup()
        let failures = NIOLockedValueBox(0)
        let start = DispatchTime.now()
        for _ in 0..<count {
            window.wait()
            done.enter()
            runner.send(to: target, payload, timeout: .seconds(60)).whenComplete { result in
                if case .failure = result { failures.withLockedValue { $0 += 1 } }
                window.signal()
                done.leave()
            }
        }
        done.wait()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        return Row(path: "Meshwork messages (encrypted, acked)", sent: count, delivered: count - failures.withLockedValue { $0 }, seconds: seconds, size: size)
    }
}

/// Reads lines from a pipe, blocking.
final class LineReader {
    let handle: FileHandle
    var buffer = Data()
    init(_ handle: FileHandle) { self.handle = handle }
    func next() -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 0x0a) {
                let line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                buffer = Data(buffer[(nl + 1)...])
                return line
            }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
    }
}

/// The baseline's receiving end: counts datagrams until `count` came or none came for a second.
struct UDPSink: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "udp-sink", abstract: "The receiving end of the plain UDP baseline (used by 'bench messages').",
                                                    shouldDisplay: false)
    struct Result: Codable { let received: Int; let seconds: Double }

    @Option(name: .long) var count: Int

    func run() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw CLIError("socket: \(String(cString: strerror(errno)))") }
        var buf: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0 }
        }
        guard ok else { throw CLIError("bind: \(String(cString: strerror(errno)))") }
        print("PORT \(UInt16(bigEndian: addr.sin_port))")
        fflush(nil)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var chunk = [UInt8](repeating: 0, count: 65536)
        var received = 0
        var first: UInt64 = 0, last: UInt64 = 0
        var waitedForFirst = 0
        while received < count {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                if received == 0, waitedForFirst < 20 { waitedForFirst += 1; continue }
                break  // a second of silence: the rest was lost
            }
            last = DispatchTime.now().uptimeNanoseconds
            if received == 0 { first = last }
            received += 1
        }
        let seconds = received > 1 ? Double(last - first) / 1e9 : 0
        let data = try JSONEncoder().encode(Result(received: received, seconds: seconds))
        print(String(decoding: data, as: UTF8.self))
    }
}
