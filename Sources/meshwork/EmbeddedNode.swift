import Dispatch
import Foundation
import Logging
import MeshDaemon
import MeshTransport
import NIOConcurrencyHelpers

/// A `Daemon` (what `meshwork up` runs) started on a thread of this process, for the
/// commands that drive nodes themselves (`demo`, `bench`).
final class EmbeddedNode: Sendable {
    let daemon: Daemon
    let runner: NodeRunner
    let finished: DispatchSemaphore

    private init(daemon: Daemon, runner: NodeRunner, finished: DispatchSemaphore) {
        self.daemon = daemon
        self.runner = runner
        self.finished = finished
    }

    /// Starts the node and waits until it is up (or failed, or `timeout` seconds passed).
    static func start(_ config: Daemon.Config, logger: Logger, timeout: Double) throws -> EmbeddedNode {
        var config = config
        config.handleSignals = false
        let daemon = Daemon(config: config, logger: logger)
        let ready = DispatchSemaphore(value: 0)
        let box = NIOLockedValueBox<NodeRunner?>(nil)
        daemon.onReady = { runner in
            box.withLockedValue { $0 = runner }
            ready.signal()
        }
        let failed = NIOLockedValueBox<String?>(nil)
        let finished = DispatchSemaphore(value: 0)
        Thread {
            do { _ = try daemon.run() } catch let e as any CustomStringConvertible { failed.withLockedValue { $0 = e.description } } catch {
                failed.withLockedValue { $0 = "\(error)" }
            }
            finished.signal()
            ready.signal()
        }.start()
        guard ready.wait(timeout: .now() + max(0.1, timeout)) == .success, let runner = box.withLockedValue({ $0 }) else {
            throw CLIError("\(config.name) did not start: \(failed.withLockedValue { $0 } ?? "timed out after \(Int(timeout)) s")")
        }
        return EmbeddedNode(daemon: daemon, runner: runner, finished: finished)
    }

    /// Stops the node as SIGTERM would, and waits (up to `timeout` seconds) for it to finish.
    func stop(timeout: Double = 10) {
        daemon.stop()
        _ = finished.wait(timeout: .now() + timeout)
    }
}
