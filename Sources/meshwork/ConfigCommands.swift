import ArgumentParser
import Foundation
import MeshCrypto
import MeshDaemon

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check a config file for 'meshwork up --config'.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a TOML config file: every key known, every value usable, the mesh token readable.",
            discussion: """
                Exits 0 and prints "FILE: ok" and the settings 'up' would use (defaults \
                filled in), or exits 1 and names the first problem as FILE:LINE: KEY: what is \
                wrong and what to write instead. Nothing is started and nothing is written.

                The keys are the flags of 'meshwork up': mesh, key, state, listen, peers, \
                name, address, tun, no-tun, mtu, log-level, metrics. Relative paths are \
                relative to the file's folder. deploy/meshwork.example.toml documents each.

                Examples:
                  meshwork config check /etc/meshwork/meshwork.toml
                  meshwork config check meshwork.toml --json
                """
        )

        @Argument(help: ArgumentHelp("The config file.", valueName: "file"))
        var file: String

        @Flag(name: .long, help: "Print JSON: {\"file\", \"ok\", \"error\"?, \"line\"?, \"key\"?, \"settings\"?}.")
        var json = false

        struct Output: Encodable {
            var file: String
            var ok: Bool
            var error: String?
            var line: Int?
            var key: String?
            var settings: [String: String]?
        }

        func run() throws {
            do {
                let s = try UpSettings.load(path: file)
                if let mesh = s.mesh {
                    let token: MeshToken
                    do { token = try KeyStore.loadToken(mesh) } catch { throw UpSettings.fileError(.mesh, error.description, in: file) }
                    if let p = s.problems(with: token).first { throw UpSettings.fileError(p.key, p.message, in: file) }
                }
                let effective = Self.effective(s)
                if json {
                    try printJSON(Output(file: file, ok: true, settings: Dictionary(uniqueKeysWithValues: effective)))
                } else {
                    print("\(file): ok")
                    printFields(effective.map { ("  " + $0.0, $0.1) })
                    if s.mesh == nil { printErr("note: no 'mesh' key: 'meshwork up --config \(file)' will need --mesh") }
                }
            } catch let e as UpSettings.FileError {
                if json {
                    try printJSON(Output(file: file, ok: false, error: e.description, line: e.line, key: e.key))
                } else {
                    printErr("Error: \(e.description)")
                }
                throw ExitCode(1)
            }
        }

        /// Every key with the value `up` would use ("(default)" marks values not in the file).
        static func effective(_ s: UpSettings) -> [(String, String)] {
            func v(_ value: String?, _ fallback: String) -> String { value ?? "\(fallback) (default)" }
            let tunOff = s.noTun == true
            return [
                ("mesh", s.mesh.map { UpSettings.isToken($0) ? "(a token)" : $0 } ?? "(not set: pass --mesh)"),
                ("key", v(s.key, "STATE/identity.key")),
                ("state", v(s.state, StatePaths.defaultDirectory())),
                ("listen", v(s.listen, UpSettings.defaultListen)),
                ("peers", s.peers.map { $0.isEmpty ? "(none)" : $0.joined(separator: ", ") } ?? "(none) (default)"),
                ("name", v(s.name, "the host name")),
                ("address", v(s.address, "any free address")),
                ("tun", tunOff ? "(none: no-tun)" : v(s.tun, UpSettings.defaultTun)),
                ("mtu", tunOff ? "-" : v(s.mtu.map(String.init), String(Daemon.defaultMTU))),
                ("log-level", v(s.logLevel, UpSettings.defaultLogLevel)),
                ("metrics", v(s.metrics, "off")),
                ("checkpoint-every", v(s.checkpointEvery.map(String.init), "512")),
            ]
        }
    }
}
