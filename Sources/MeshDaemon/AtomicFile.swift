#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// File errors that name the path and say what to do.
public enum FileError: Error, Equatable, CustomStringConvertible {
    case notFound(String)
    case exists(String)
    case permissionsTooOpen(path: String, mode: UInt32)
    case io(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .notFound(let p):
            return "\(p): no such file"
        case .exists(let p):
            return "\(p) already exists; pass --force to overwrite it (the old key is lost unless backed up)"
        case .permissionsTooOpen(let p, let m):
            return "\(p) is readable by other users (mode \(String(m, radix: 8, uppercase: false).leftPadded(to: 4))); "
                + "it holds a secret, so it is not used: run 'chmod 600 \(p)'"
        case .io(let p, let op, let e):
            return "\(p): \(op) failed: \(String(cString: strerror(e)))"
        }
    }
}

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Crash-safe file writes: write a temporary file beside the target, fsync it, rename it
/// over the target, then fsync the directory. After a crash at any point the target holds
/// either its old contents or the new ones in full, never a mix.
public enum AtomicFile {
    /// Writes `bytes` to `path` with `mode`. With `overwrite: false`, an existing file is
    /// an error and is left alone (checked again at rename time with link(2), so a file
    /// that appears meanwhile is not clobbered either).
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600, overwrite: Bool) throws(FileError) {
        if !overwrite, exists(path) { throw .exists(path) }
        let dir = directory(of: path)
        let tmp = "\(dir)/.\(basename(of: path)).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io(path: tmp, operation: "create", errno: errno) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            _ = fchmod(fd, mode)  // umask must not widen or narrow the mode we asked for
            var written = 0
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { raw in Glibc.write(fd, raw.baseAddress! + written, raw.count - written) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileError.io(path: tmp, operation: "write", errno: errno)
                }
                written += n
            }
            guard fsync(fd) == 0 else { throw FileError.io(path: tmp, operation: "fsync", errno: errno) }
        } catch let e as FileError {
            throw e
        } catch {
            throw .io(path: tmp, operation: "write", errno: EIO)
        }
        if overwrite {
            guard rename(tmp, path) == 0 else { throw .io(path: path, operation: "rename", errno: errno) }
        } else {
            // link(2) fails with EEXIST instead of replacing: no race with a concurrent writer.
            guard link(tmp, path) == 0 else {
                let e = errno
                throw e == EEXIST ? .exists(path) : .io(path: path, operation: "link", errno: e)
            }
            unlink(tmp)
        }
        ok = true
        syncDirectory(dir)
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Reads a whole file. With `secret: true`, refuses a file that group or others may
    /// read (as ssh does for private keys).
    /// Files larger than `limit` are refused rather than read into memory.
    public static func read(_ path: String, secret: Bool = false, limit: Int = 1 << 20) throws(FileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw e == ENOENT ? .notFound(path) : .io(path: path, operation: "open", errno: e)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, operation: "stat", errno: errno) }
        if secret, st.st_mode & 0o077 != 0 { throw .permissionsTooOpen(path: path, mode: UInt32(st.st_mode & 0o7777)) }
        let tooLarge = "read (file larger than \(limit >> 20) MiB)"
        guard st.st_size <= limit else { throw .io(path: path, operation: tooLarge, errno: EFBIG) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw .io(path: path, operation: tooLarge, errno: EFBIG) }
        }
        return out
    }

    /// Creates a directory (and its parents) with `mode` if it does not exist.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws(FileError) {
        if exists(path) { return }
        let parent = directory(of: path)
        if parent != path, !exists(parent) { try makeDirectory(parent, mode: mode) }
        guard mkdir(path, mode) == 0 || errno == EEXIST else { throw .io(path: path, operation: "mkdir", errno: errno) }
    }

    static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func basename(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
