import ArgumentParser
import Foundation
import MeshCore
import MeshDaemon

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send an end-to-end encrypted message to a member; succeed only when it acknowledges receipt.",
        discussion: """
            The running node (--state) makes a session with PEER on demand (a Noise IKpsk2 \
            handshake), sends the message over it split into fragments, and waits until PEER's \
            node acknowledges every fragment. PEER is a member's name, its node ID or a prefix \
            of it (at least 4 hex digits), or its overlay address. Messages to the same peer \
            arrive in the order sent, each once. Up to 1 MiB (1,048,576 bytes).

            Exit status: 0 when PEER acknowledged the message; 1 when it did not (unknown \
            peer, unreachable, timed out, too large: the reason is printed); 64 for a usage error.
            JSON: {nodeId, fingerprint, name, bytes, milliseconds}.

            Examples:
              meshwork send node-b "hello"
              meshwork send 100.80.0.7 --file report.pdf --timeout 30s
              echo hi | meshwork send 3fa2c1 --file -
            """
    )

    static let limit = 1 << 20

    @Argument(help: ArgumentHelp("The member to send to: name, node ID or ID prefix, or overlay address.", valueName: "peer"))
    var peer: String
    @Argument(help: ArgumentHelp("The message text (or use --file).", valueName: "text"))
    var text: String?
    @Option(name: .long, help: ArgumentHelp("Send this file's contents instead of TEXT ('-' for standard input).", valueName: "file"))
    var file: String?
    @Option(name: .long, help: ArgumentHelp("How long to wait for the acknowledgement.", valueName: "duration"))
    var timeout: String = "10s"
    @OptionGroup var options: StateOption
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        switch (text, file) {
        case (nil, nil): throw ValidationError("nothing to send: give the message as TEXT, or --file FILE")
        case (.some, .some): throw ValidationError("give either TEXT or --file, not both")
        default: break
        }
        do {
            guard try DurationText.parseSeconds(timeout) >= 1 else { throw ValidationError("--timeout: use at least 1s") }
        } catch let e as DurationText.ParseError {
            throw ValidationError("--timeout: \(e.description)")
        }
    }

    func run() throws {
        let bytes: Data
        if let text {
            bytes = Data(text.utf8)
        } else if file == "-" {
            bytes = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            do { bytes = try Data(contentsOf: URL(fileURLWithPath: file!)) } catch {
                throw CLIError("cannot read --file \(file!): \((error as NSError).localizedDescription)")
            }
        }
        guard bytes.count <= Self.limit else {
            throw CLIError("message too large: \(bytes.count) bytes; the limit is \(Self.limit) bytes (1 MiB). Split it, or send a path and copy the file another way")
        }
        let seconds = Double(try DurationText.parseSeconds(timeout))
        let request = ControlProtocol.Request(command: "send", target: peer, data: bytes.base64EncodedString(), timeoutSeconds: seconds)
        let data: Data
        do {
            data = try ControlClient.request(request, stateDirectory: options.directory, timeoutSeconds: Int(seconds) + 10)
        } catch { throw CLIError("\(error)") }
        if json {
            FileHandle.standardOutput.write(data)
            return
        }
        let r = try JSONDecoder().decode(ControlProtocol.Sent.self, from: data)
        print("Delivered \(r.bytes) bytes to \(r.name ?? "?") (\(r.fingerprint)): acknowledged in \(String(format: "%.1f", r.milliseconds)) ms.")
    }
}

struct Listen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the messages this node receives, as they arrive.",
        discussion: """
            Each message is printed with its time of arrival, its sender (name, node ID \
            fingerprint, overlay address) and its text; a message that is not UTF-8 text is \
            shown by size (use --json to get it in base64). Messages that arrived while no \
            listener was connected (up to 256) are printed first. Runs until interrupted, or \
            until --count messages have been printed.

            With --json: one JSON object per line: {from, fingerprint, name, address, \
            receivedAt, bytes, text | base64}.

            Examples:
              meshwork listen
              meshwork listen --json --count 1 > message.json
            """
    )

    @Option(name: .long, help: ArgumentHelp("Exit after this many messages.", valueName: "n"))
    var count: Int?
    @OptionGroup var options: StateOption
    @Flag(name: .long, help: "Print one JSON object per message.") var json = false

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count: use 1 or more") }
    }

    func run() throws {
        var seen = 0
        if !json { printErr("Listening for messages (Ctrl-C to stop)...") }
        do {
            try ControlClient.stream(ControlProtocol.Request(command: "listen"), stateDirectory: options.directory) { line in
                if json {
                    FileHandle.standardOutput.write(line + Data([0x0a]))
                } else {
                    let m = try JSONDecoder().decode(ControlProtocol.Message.self, from: line)
                    let who = "\(m.name ?? "?") (\(m.fingerprint)\(m.address.map { ", \($0)" } ?? ""))"
                    let body = m.text ?? "<\(m.bytes) bytes, not UTF-8 text; --json shows them in base64>"
                    print("\(m.receivedAt)  \(who): \(body)")
                    fflush(nil)
                }
                seen += 1
                return count.map { seen < $0 } ?? true
            }
        } catch { throw CLIError("\(error)") }
        // The node ended the stream: it stopped, or it cut this listener off for falling
        // 32 MiB behind (its log says which).
        if let count, seen < count { throw CLIError("the node closed the connection after \(seen) of \(count) messages (it stopped, or this listener fell 32 MiB behind)") }
        if count == nil { throw CLIError("the node closed the connection after \(seen) messages (it stopped, or this listener fell 32 MiB behind)") }
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ping a member at the overlay level, with or without a TUN device; show the path and round trips.",
        discussion: """
            Each ping is an echo over the encrypted session with PEER (made on demand: the \
            first round trip includes the handshake), answered by PEER's node itself, so it \
            works with --no-tun. The path is direct, or through a relaying member when the \
            direct path does not answer. PEER: a name, a node ID (prefix) or an overlay address.
            Exit status: 0 if any reply came, 1 if none. JSON: one object per reply: \
            {nodeId, fingerprint, name, milliseconds, path, relayFingerprint, relayName}.

            Examples:
              meshwork ping node-b
              meshwork ping 100.80.0.7 --count 10 --json
            """
    )

    @Argument(help: ArgumentHelp("The member to ping: name, node ID or ID prefix, or overlay address.", valueName: "peer"))
    var peer: String
    @Option(name: .long, help: ArgumentHelp("How many pings (one a second).", valueName: "n")) var count = 4
    @Option(name: .long, help: ArgumentHelp("How long to wait for each reply.", valueName: "duration")) var timeout = "2s"
    @OptionGroup var options: StateOption
    @Flag(name: .long, help: "Print one JSON object per reply.") var json = false

    func validate() throws {
        guard (1...10_000).contains(count) else { throw ValidationError("--count: use 1 to 10000") }
        do {
            guard try DurationText.parseSeconds(timeout) >= 1 else { throw ValidationError("--timeout: use at least 1s") }
        } catch let e as DurationText.ParseError {
            throw ValidationError("--timeout: \(e.description)")
        }
    }

    func run() throws {
        let seconds = Double(try DurationText.parseSeconds(timeout))
        var replies: [Double] = []
        var lastError = ""
        for i in 0..<count {
            if i > 0 { Thread.sleep(forTimeInterval: 1) }
            let data: Data
            do {
                data = try ControlClient.request(ControlProtocol.Request(command: "ping", target: peer, timeoutSeconds: seconds),
                                                 stateDirectory: options.directory, timeoutSeconds: Int(seconds) + 5)
            } catch ControlClient.ClientError.daemon(let why) {
                lastError = why
                if !json { print("ping \(i + 1): \(why)") }
                if why.hasPrefix("unknown peer") || why.hasPrefix("unreachable") || why.contains("is this node") { throw CLIError(why) }
                continue
            } catch { throw CLIError("\(error)") }
            let p = try JSONDecoder().decode(ControlProtocol.Pong.self, from: data)
            replies.append(p.milliseconds)
            if json {
                FileHandle.standardOutput.write(data + Data([0x0a]))
            } else {
                let path = p.path == "relay" ? "relay via \(p.relayName ?? p.relayFingerprint ?? "?")" : p.path
                print("reply from \(p.name ?? "?") (\(p.fingerprint)): \(String(format: "%.3f", p.milliseconds)) ms, \(path)")
            }
        }
        if !json, !replies.isEmpty {
            let sorted = replies.sorted()
            print(String(format: "%d of %d replied; min %.3f ms, median %.3f ms, max %.3f ms", replies.count, count,
                         sorted.first!, sorted[sorted.count / 2], sorted.last!))
        }
        if replies.isEmpty { throw CLIError("no replies from \(peer)\(lastError.isEmpty ? "" : ": \(lastError)")") }
    }
}
