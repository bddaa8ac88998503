import Foundation
import MeshCore
import MeshCrypto
import TOMLKit

/// Every setting of `meshwork up`, from its flags or a TOML config file (`up --config`).
///
/// Each key of the file is named as its flag (`log-level` for `--log-level`); a flag given
/// on the command line overrides the file. A nil field is "not given": the default applies.
/// One validator serves both sources, so a bad value reads the same way from either, only
/// named differently (`--mtu` on the command line, `mtu` with its line in a file).
public struct UpSettings: Sendable, Equatable {
    public var mesh: String?
    public var key: String?
    public var state: String?
    public var listen: String?
    public var peers: [String]?
    public var name: String?
    public var address: String?
    public var tun: String?
    public var noTun: Bool?
    public var mtu: Int?
    public var logLevel: String?
    public var metrics: String?
    /// Grants a pool view holds before this node, if it is the proposer, proposes a
    /// checkpoint (docs/pool.md, "History compaction"); 0: never.
    public var checkpointEvery: Int?

    public init() {}

    public static let defaultListen = "0.0.0.0:51830"
    public static let defaultTun = "meshwork0"
    public static let defaultLogLevel = "info"
    /// Checkpoint intervals allowed besides 0 (never): fewer than 32 grants would
    /// checkpoint at almost every join.
    public static let checkpointEveryRange = 32...1_048_576
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// The keys of the file, in the order the example documents them, with their TOML type.
    public enum Key: String, CaseIterable, Sendable {
        case mesh, key, state, listen, peers, name, address, tun
        case noTun = "no-tun"
        case mtu
        case logLevel = "log-level"
        case metrics
        case checkpointEvery = "checkpoint-every"

        var expected: String {
            switch self {
            case .peers: return "an array of strings"
            case .noTun: return "true or false"
            case .mtu, .checkpointEvery: return "an integer"
            default: return "a string"
            }
        }
    }

    /// Fields of `other` that are set replace those of `self` (flags over the file).
    public func overridden(by other: UpSettings) -> UpSettings {
        var s = self
        s.mesh = other.mesh ?? mesh
        s.key = other.key ?? key
        s.state = other.state ?? state
        s.listen = other.listen ?? listen
        s.peers = other.peers ?? peers
        s.name = other.name ?? name
        s.address = other.address ?? address
        s.tun = other.tun ?? tun
        s.noTun = other.noTun ?? noTun
        s.mtu = other.mtu ?? mtu
        s.logLevel = other.logLevel ?? logLevel
        s.metrics = other.metrics ?? metrics
        s.checkpointEvery = other.checkpointEvery ?? checkpointEvery
        return s
    }

    /// A value that is wrong whichever way it came: the key and what to write instead.
    public struct Problem: Error, Equatable, Sendable {
        public var key: Key
        public var message: String
    }

    /// Checks every value that is set; the first problem found, in key order.
    public func problems() -> [Problem] {
        var out: [Problem] = []
        func bad(_ key: Key, _ message: String) { out.append(Problem(key: key, message: message)) }
        if let mesh, mesh.isEmpty { bad(.mesh, "is empty: give a mesh token, or the path of a file holding one") }
        if let listen, let why = Self.listenProblem(listen) { bad(.listen, why) }
        for p in peers ?? [] {
            do { _ = try HostPort(parsing: p) } catch { bad(.peers, error.description) }
        }
        if let name, !Names.isValid(name, limit: 64) {
            bad(.name, "'\(name)' is invalid: use 1-64 characters from A-Z a-z 0-9 . _ -")
        }
        if let address, IPv4Address(address) == nil {
            bad(.address, "'\(address)' is not an IPv4 address: write four decimal octets, e.g. 100.80.0.10")
        }
        if let tun, !(1...15).contains(tun.utf8.count) || !tun.unicodeScalars.allSatisfy(Names.isNameCharacter) {
            bad(.tun, "'\(tun)' is not a valid interface name: use 1-15 characters from A-Z a-z 0-9 . _ -")
        }
        if let mtu, !(576...65_535).contains(mtu) {
            bad(.mtu, "\(mtu) is out of range: use 576 to 65535 (1420 suits a 1500-byte underlay)")
        }
        if let checkpointEvery, checkpointEvery != 0, !Self.checkpointEveryRange.contains(checkpointEvery) {
            bad(.checkpointEvery, "\(checkpointEvery) is out of range: use 0 (never compact) or \(Self.checkpointEveryRange.lowerBound) to \(Self.checkpointEveryRange.upperBound) grants (default 512)")
        }
        if let logLevel, !Self.logLevels.contains(logLevel) {
            bad(.logLevel, "'\(logLevel)' is not a level: use trace, debug, info, notice, warning, error or critical")
        }
        if let metrics, let why = Self.metricsProblem(metrics) { bad(.metrics, why) }
        if noTun == true, tun != nil || mtu != nil {
            bad(.noTun, "is set, and so is \(tun != nil ? "tun" : "mtu"): a node without a device has no device name or MTU; remove one of them")
        }
        return out
    }

    /// What can be checked only with the mesh token in hand.
    public func problems(with token: MeshToken) -> [Problem] {
        guard let address, let a = IPv4Address(address) else { return [] }
        guard token.pool.contains(a), a != token.pool.first, a != token.pool.last else {
            return [Problem(key: .address, message: "\(address) is not a usable address of the mesh pool \(token.pool)")]
        }
        return []
    }

    /// Whether `mesh` holds a token itself rather than naming a file.
    public static func isToken(_ mesh: String) -> Bool {
        mesh.trimmingCharacters(in: .whitespaces).range(of: #"^mwmesh[0-9]+\."#, options: .regularExpression) != nil
    }

    /// `--listen`: an IP address and a port (0: any free port).
    public static func listenProblem(_ text: String) -> String? {
        guard parseListen(text) != nil else {
            return "'\(text)' must be an IP address and a port from 0 to 65535, e.g. 0.0.0.0:51830 or [::]:51830"
        }
        return nil
    }

    /// The host and port of a `--listen` value; port 0 allowed.
    public static func parseListen(_ text: String) -> (host: String, port: Int)? {
        let anyPort = text.hasSuffix(":0")
        let probe = anyPort ? String(text.dropLast(2)) + ":1" : text
        guard let hp = try? HostPort(parsing: probe), Endpoint(hp.description) != nil else { return nil }
        return (hp.host, anyPort ? 0 : Int(hp.port))
    }

    /// `--metrics`: where to serve Prometheus text, an IP address and a port.
    public static func metricsProblem(_ text: String) -> String? {
        guard parseListen(text) != nil else {
            return "'\(text)' must be an IP address and a port, e.g. 127.0.0.1:9477 (the endpoint has no authentication: keep it off public addresses)"
        }
        return nil
    }

    // MARK: - The file

    /// What is wrong with a config file: where, which key, and how to fix it.
    public struct FileError: Error, CustomStringConvertible, Sendable {
        public var file: String
        public var line: Int?
        public var key: String?
        public var message: String

        public init(file: String, line: Int?, key: String?, message: String) {
            self.file = file
            self.line = line
            self.key = key
            self.message = message
        }

        public var description: String {
            let place = line.map { "\(file):\($0)" } ?? file
            if let key { return "\(place): \(key): \(message)" }
            return "\(place): \(message)"
        }
    }

    /// Reads and checks a config file; throws the first problem.
    public static func load(path: String) throws(FileError) -> UpSettings {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let why = FileManager.default.fileExists(atPath: path) ? "cannot be read as UTF-8 text (\(error.localizedDescription))" : "no such file"
            throw FileError(file: path, line: nil, key: nil, message: why)
        }
        var s = try parse(text, file: path)
        // Paths in a file are relative to the file's folder, not to wherever `up` starts.
        let folder = (path as NSString).deletingLastPathComponent
        func anchored(_ p: String?) -> String? {
            guard let p, !p.hasPrefix("/"), !folder.isEmpty else { return p }
            return folder + "/" + p
        }
        if let m = s.mesh, !isToken(m) { s.mesh = anchored(m) }
        s.key = anchored(s.key)
        s.state = anchored(s.state)
        return s
    }

    /// Parses TOML text (`file` names it in errors) and checks every value.
    public static func parse(_ text: String, file: String) throws(FileError) -> UpSettings {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw FileError(file: file, line: e.source.begin.line, key: nil, message: "not valid TOML: \(e.description)")
        } catch {
            throw FileError(file: file, line: nil, key: nil, message: "not valid TOML: \(error)")
        }
        func line(of key: String) -> Int? { Self.line(of: key, in: text) }
        func fail(_ key: String, _ message: String) -> FileError { FileError(file: file, line: line(of: key), key: key, message: message) }

        var s = UpSettings()
        for name in table.keys.sorted(by: { (line(of: $0) ?? 0) < (line(of: $1) ?? 0) }) {
            guard let key = Key(rawValue: name) else {
                let hint = Key.allCases.first { $0.rawValue.replacingOccurrences(of: "-", with: "_") == name || $0.rawValue + "s" == name || $0.rawValue == name + "s" }
                let known = Key.allCases.map(\.rawValue).joined(separator: ", ")
                throw fail(name, "unknown key" + (hint.map { " (did you mean '\($0.rawValue)'?)" } ?? "") + "; the keys are: \(known)")
            }
            let value = table[name]!
            func wrongType() -> FileError {
                fail(name, "must be \(key.expected), not \(Self.describe(value))")
            }
            switch key {
            case .peers:
                guard let array = value.array else { throw wrongType() }
                var out: [String] = []
                for item in array {
                    guard let t = item.string else { throw fail(name, "must be an array of strings, but holds \(Self.describe(item))") }
                    out.append(t)
                }
                s.peers = out
            case .noTun:
                guard let b = value.bool else { throw wrongType() }
                s.noTun = b
            case .mtu:
                guard let i = value.int else { throw wrongType() }
                s.mtu = i
            case .checkpointEvery:
                guard let i = value.int else { throw wrongType() }
                s.checkpointEvery = i
            default:
                guard let t = value.string else { throw wrongType() }
                switch key {
                case .mesh: s.mesh = t
                case .key: s.key = t
                case .state: s.state = t
                case .listen: s.listen = t
                case .name: s.name = t
                case .address: s.address = t
                case .tun: s.tun = t
                case .logLevel: s.logLevel = t
                case .metrics: s.metrics = t
                case .peers, .noTun, .mtu, .checkpointEvery: break
                }
            }
        }
        if let p = s.problems().first { throw fail(p.key.rawValue, p.message) }
        return s
    }

    /// A problem with `key` as the file at `path` sets it, at the key's line.
    public static func fileError(_ key: Key, _ message: String, in path: String) -> FileError {
        let line = (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Self.line(of: key.rawValue, in: $0) }
        return FileError(file: path, line: line, key: key.rawValue, message: message)
    }

    /// The line (from 1) where `key` is set at the top level of TOML `text`, if found.
    public static func line(of key: String, in text: String) -> Int? {
        for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = l.drop { $0 == " " || $0 == "\t" }
            for k in [key, "\"\(key)\"", "'\(key)'"] where t.hasPrefix(k) {
                let rest = t.dropFirst(k.count).drop(while: { $0 == " " || $0 == "\t" })
                if rest.hasPrefix("=") || rest.hasPrefix(".") { return i + 1 }  // `key = …` or a dotted `key.sub = …`
            }
            if t.hasPrefix("[\(key)]") || t.hasPrefix("[[\(key)]]") { return i + 1 }
        }
        return nil
    }

    static func describe(_ value: any TOMLValueConvertible) -> String {
        switch value.type {
        case .string: return "the string \"\(value.string ?? "")\""
        case .int: return "the integer \(value.int ?? 0)"
        case .double: return "the number \(value.double ?? 0)"
        case .bool: return value.bool == true ? "true" : "false"
        case .array: return "an array"
        case .table: return "a table"
        default: return "a \(value.type)"
        }
    }
}
