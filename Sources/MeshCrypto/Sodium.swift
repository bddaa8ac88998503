import CSodium

/// libsodium, initialised once. Every entry point of this module calls `Sodium.ready()`
/// first; `sodium_init` is idempotent and thread-safe, and this runs it at most once.
public enum Sodium {
    private static let initialised: Bool = sodium_init() >= 0

    @inline(__always)
    static func ready() {
        // libsodium fails to initialise only when the system has no entropy source at
        // all; nothing in this module would be safe then, so stop here.
        if !initialised { fatalError("libsodium could not be initialised (no system entropy source?)") }
    }

    /// The version of the libsodium library linked at run time, e.g. "1.0.18".
    public static var version: String {
        ready()
        return String(cString: sodium_version_string())
    }
}

/// What can go wrong in a cryptographic operation. None of these carries secret material.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    case wrongLength(what: String, expected: Int, got: Int)
    case authenticationFailed
    case invalidPublicKey
    case weakSharedSecret
    case outOfSecureMemory

    public var description: String {
        switch self {
        case .wrongLength(let w, let e, let g): return "\(w) must be \(e) bytes, got \(g)"
        case .authenticationFailed: return "authentication failed: the data was altered or the key is wrong"
        case .invalidPublicKey: return "the public key is not a valid point"
        case .weakSharedSecret: return "the key exchange produced a weak (all-zero) shared secret"
        case .outOfSecureMemory: return "could not allocate guarded memory for a secret"
        }
    }
}

/// Constant-time comparison (`sodium_memcmp`): the time taken does not depend on where
/// the inputs differ. Inputs of different lengths compare unequal.
public func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    Sodium.ready()
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return sodium_memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
}

public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in constantTimeEqual(pa, pb) } }
}

/// Overwrites bytes with zeros in a way the compiler will not optimise away.
public func secureZero(_ bytes: inout [UInt8]) {
    Sodium.ready()
    bytes.withUnsafeMutableBytes { raw in
        if let base = raw.baseAddress { sodium_memzero(base, raw.count) }
    }
}
