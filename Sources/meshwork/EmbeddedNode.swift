import Dispatch
import Foundation
import Logging
import MeshDaemon
import MeshTransport
import NIOConcurrencyHelpers
import NIOCore

/// A `Daemon` (what `meshwork up` runs) started on a thread of this process, for the
/// commands that drive nodes themselves (`demo`, `bench`).
final class EmbeddedNode: Sendable {
    let daemon: Daemon
    let runner: NodeRunner
    let finished: DispatchSemaphore
    /// Set when `Daemon.run` has returned: why, if it failed.
    let ended: NIOLockedValueBox<(ended: Bool, failure: String?)>

    private init(daemon: Daemon, runner: NodeRunner, finished: DispatchSemaphore, ended: NIOLockedValueBox<(ended: Bool, failure: String?)>) {
        self.daemon = daemon
        self.runner = runner
        self.finished = finished
        self.ended = ended
    }

    /// Why the node is no longer running (nil while it runs).
    var stoppedReason: String? {
        let e = ended.withLockedValue { $0 }
        return e.ended ? (e.failure ?? "it stopped") : nil
    }

    /// Starts the node and waits until it is up (or failed, or `timeout` seconds passed).
    static func start(_ config: Daemon.Config, logger: Logger, timeout: Double) throws -> EmbeddedNode {
        var config = config
        config.handleSignals = false
        config.notifySystemd = false  // a program embedding nodes is not each of them
        let daemon = Daemon(config: config, logger: logger)
        let ready = DispatchSemaphore(value: 0)
        let box = NIOLockedValueBox<NodeRunner?>(nil)
        daemon.onReady = { runner in
            box.withLockedValue { $0 = runner }
            ready.signal()
        }
        let ended = NIOLockedValueBox<(ended: Bool, failure: String?)>((false, nil))
        let finished = DispatchSemaphore(value: 0)
        Thread {
            var failure: String?
            do {
                let status = try daemon.run()
                if status != 0 { failure = "it stopped on a fatal error (status \(status))" }
            } catch let e as any CustomStringConvertible { failure = e.description } catch { failure = "\(error)" }
            ended.withLockedValue { $0 = (true, failure) }
            finished.signal()
            ready.signal()
        }.start()
        guard ready.wait(timeout: .now() + max(0.1, timeout)) == .success, let runner = box.withLockedValue({ $0 }) else {
            daemon.stop()  // if it is up after all, it stops at once
            throw CLIError("\(config.name) did not start: \(ended.withLockedValue { $0.failure } ?? "timed out after \(Int(timeout)) s")")
        }
        return EmbeddedNode(daemon: daemon, runner: runner, finished: finished, ended: ended)
    }

    /// Stops the node as SIGTERM would, and waits (up to `timeout` seconds) for it to finish.
    func stop(timeout: Double = 10) {
        daemon.stop()
        _ = finished.wait(timeout: .now() + timeout)
    }
}

/// Waits for `future` at most `seconds`; throws if it failed or did not complete in time
/// (a node that stopped never completes its futures).
func wait<T: Sendable>(_ future: EventLoopFuture<T>, seconds: Double, what: String) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let result = NIOLockedValueBox<Result<T, any Error>?>(nil)
    future.whenComplete { r in
        result.withLockedValue { $0 = r }
        done.signal()
    }
    guard done.wait(timeout: .now() + max(0.01, seconds)) == .success, let r = result.withLockedValue({ $0 }) else {
        throw CLIError("\(what): no answer within \(String(format: "%.0f", seconds)) s")
    }
    return try r.get()
}
