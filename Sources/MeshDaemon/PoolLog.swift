#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import MeshCore
import MeshPool

/// What one persist step added to the pool state: new grants, the grant sequence
/// high-water mark, and reclaim votes given. One line of `pool.log`.
public struct PoolLogRecord: Codable, Sendable, Equatable {
    public var seq: UInt64
    /// Each grant's wire encoding, hex.
    public var grants: [String]
    /// Holding grant ref (hex) → successor voted for (node ID hex).
    public var votes: [String: String]?

    public init(seq: UInt64, grants: [Grant], votes: [Bytes32: NodeID]) {
        self.seq = seq
        self.grants = grants.map { Hex.encode($0.wireBytes) }
        self.votes = votes.isEmpty ? nil : Dictionary(uniqueKeysWithValues: votes.map { ($0.key.hex, $0.value.hex) })
    }

    /// The record as state: the same decoding (and errors) as `pool.json`'s.
    func decoded(path: String, line: Int) throws -> (grants: [Grant], seq: UInt64, votes: [Bytes32: NodeID]) {
        var file = PoolStateFile(meshId: "", seq: seq, grants: [], votes: [:])
        file.grants = grants
        file.votes = votes
        let at = "\(path) line \(line)"
        return (try file.decodedGrants(path: at), seq, try file.decodedVotes(path: at))
    }
}

/// The pool state's append-only log, beside `pool.json` (docs/operations.md, "State").
///
/// `pool.json` is a snapshot; `pool.log` holds what was made durable after it, one line of
/// JSON per persist step, each appended with one `write` and one `fsync`: an ACK costs
/// what it adds, not a rewrite of the whole history. The first line names the mesh. When
/// the log outgrows the snapshot (and 1 MiB), the state is compacted: a new snapshot is
/// written crash-safe (write, fsync, rename, fsync of the directory), then the log is cut
/// back to its first line. A crash between the two leaves records the snapshot already
/// holds, which are read again harmlessly (grants are a set, seq a maximum).
///
/// Reading: a last line cut short by a crash (no newline) was never acknowledged (its
/// fsync had not returned) and is dropped; any other line that does not decode is
/// corruption, reported with its line number and never skipped.
public final class PoolLog: @unchecked Sendable {
    public let path: String
    let meshId: String
    var fd: Int32
    public private(set) var bytes: Int

    struct Header: Codable {
        var meshwork: String
        var version: Int
        var meshId: String
    }

    static let version = 1

    /// Opens the log for appending; creates it (with its header line) if missing.
    /// `read` it first: opening does not check what is there.
    public init(path: String, meshId: String) throws {
        self.path = path
        self.meshId = meshId
        let existed = AtomicFile.exists(path)
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError.io(path: path, operation: "open", errno: errno) }
        var st = stat()
        fstat(fd, &st)
        bytes = Int(st.st_size)
        if !existed || bytes == 0 {
            try writeHeader()
            AtomicFile.syncDirectory(AtomicFile.directory(of: path))
        } else {
            // A torn last line (a crash mid-append) must not glue onto the next record.
            try cutTornTail()
        }
    }

    deinit { close(fd) }

    /// Appends one record and makes it durable before returning.
    public func append(_ record: PoolLogRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var line = Array(try encoder.encode(record))
        line.append(0x0a)
        try writeAll(line)
        guard fsync(fd) == 0 else { throw FileError.io(path: path, operation: "fsync", errno: errno) }
    }

    /// Cuts the log back to its header (after a snapshot that holds everything in it).
    public func reset() throws {
        guard ftruncate(fd, 0) == 0 else { throw FileError.io(path: path, operation: "truncate", errno: errno) }
        bytes = 0
        try writeHeader()
    }

    func writeHeader() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var line = Array(try encoder.encode(Header(meshwork: "pool log", version: Self.version, meshId: meshId)))
        line.append(0x0a)
        try writeAll(line)
        guard fsync(fd) == 0 else { throw FileError.io(path: path, operation: "fsync", errno: errno) }
    }

    func writeAll(_ line: [UInt8]) throws {
        var written = 0
        while written < line.count {
            let n = line.withUnsafeBytes { raw in write(fd, raw.baseAddress! + written, raw.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError.io(path: path, operation: "write", errno: errno)
            }
            written += n
        }
        bytes += line.count
    }

    /// Drops an unterminated last line (never acknowledged: its fsync had not returned).
    func cutTornTail() throws {
        let all = try AtomicFile.read(path, limit: stateFileLimit)
        guard let last = all.lastIndex(of: 0x0a) else {
            guard ftruncate(fd, 0) == 0 else { throw FileError.io(path: path, operation: "truncate", errno: errno) }
            bytes = 0
            try writeHeader()
            return
        }
        if last + 1 < all.count {
            guard ftruncate(fd, off_t(last + 1)) == 0, fsync(fd) == 0 else { throw FileError.io(path: path, operation: "truncate", errno: errno) }
            bytes = last + 1
        }
    }

    /// The records of the log at `path` (none if it does not exist), checked as `load`
    /// checks `pool.json`: the mesh it belongs to, its version, every line.
    public static func read(path: String, meshId: String) throws -> [PoolLogRecord] {
        guard AtomicFile.exists(path) else { return [] }
        let all = try AtomicFile.read(path, limit: stateFileLimit)
        var lines = all.split(separator: 0x0a, omittingEmptySubsequences: false)
        // The last piece: empty after a final newline, else a torn append (dropped).
        lines.removeLast()
        guard let first = lines.first else { return [] }
        let decoder = JSONDecoder()
        guard let header = try? decoder.decode(Header.self, from: Data(first)), header.meshwork == "pool log" else {
            throw StateFileError.corrupt(path: path, reason: "line 1 is not a pool log header")
        }
        guard header.version <= version else { throw StateFileError.newerVersion(path: path, header.version) }
        guard header.meshId == meshId else { throw StateFileError.otherMesh(path: path, found: header.meshId, expected: meshId) }
        var out: [PoolLogRecord] = []
        for (i, line) in lines.enumerated().dropFirst() {
            guard let r = try? decoder.decode(PoolLogRecord.self, from: Data(line)) else {
                throw StateFileError.corrupt(path: path, reason: "line \(i + 1) is not a pool log record")
            }
            _ = try r.decoded(path: path, line: i + 1)
            out.append(r)
        }
        return out
    }
}
