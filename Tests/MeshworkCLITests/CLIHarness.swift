import Foundation

/// Runs the real `meshwork` executable built beside the test bundle.
struct CLI {
    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static let executable: URL = {
        // The test runner lives in the same build products directory as the executable.
        let me = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        var dir = me.deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("meshwork")
            if FileManager.default.isExecutableFile(atPath: candidate.path), !candidate.hasDirectoryPath { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        fatalError("meshwork executable not found near \(me.path); run 'swift build' first")
    }()

    /// A fresh directory for one test, removed by `cleanup()`.
    let dir: String

    init() {
        dir = NSTemporaryDirectory() + "meshwork-cli-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func path(_ name: String) -> String { dir + "/" + name }

    @discardableResult
    func run(_ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = Self.executable
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["MESHWORK_STATE"] = dir + "/state"
        env["COLUMNS"] = "200"
        p.environment = env
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Read both pipes fully before waiting, so a large output cannot block the child.
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

    func mode(_ name: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path(name)))?[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    /// Polls `condition` every `every` seconds until it holds or `seconds` pass: tests wait
    /// on conditions with deadlines, never on fixed sleeps.
    static func eventually(_ seconds: Double, every: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: every)
        }
        return try condition()
    }

    func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }
}
