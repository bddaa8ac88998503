#if canImport(Glibc)
import Glibc
#endif

/// Where a node keeps its state: identity key, persisted membership and pool state, and
/// the control socket.
///
/// The default directory is `$MESHWORK_STATE` if set; otherwise `/var/lib/meshwork` for
/// root, or `$XDG_STATE_HOME/meshwork` (`~/.local/state/meshwork`) for other users.
public struct StatePaths: Sendable {
    public let directory: String

    public init(directory: String? = nil) {
        self.directory = directory ?? StatePaths.defaultDirectory()
    }

    public var identityKey: String { directory + "/identity.key" }

    public static func defaultDirectory() -> String {
        if let s = env("MESHWORK_STATE"), !s.isEmpty { return s }
        if getuid() == 0 { return "/var/lib/meshwork" }
        if let x = env("XDG_STATE_HOME"), !x.isEmpty { return x + "/meshwork" }
        return (env("HOME") ?? ".") + "/.local/state/meshwork"
    }

    static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }
}
