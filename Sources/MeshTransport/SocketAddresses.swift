import Glibc
import MeshCore
import NIOCore

extension Endpoint {
    /// The NIO socket address of this endpoint.
    public var socketAddress: SocketAddress? {
        withSockAddr { sa, _ in SocketAddress(sa) }
    }

    /// The endpoint of a NIO IPv4 or IPv6 socket address (nil for Unix sockets). Binary to
    /// binary: this runs for every datagram received, so no address text is made or parsed.
    public init?(_ address: SocketAddress) {
        switch address {
        case .v4(let a):
            self.init(IPv4Address(UInt32(bigEndian: a.address.sin_addr.s_addr)), port: UInt16(bigEndian: a.address.sin_port))
        case .v6(let a):
            var sin6 = a.address
            let port = UInt16(bigEndian: sin6.sin6_port)
            let (hi, lo) = withUnsafeBytes(of: &sin6.sin6_addr) { raw -> (UInt64, UInt64) in
                var hi: UInt64 = 0, lo: UInt64 = 0
                for i in 0..<8 { hi = hi << 8 | UInt64(raw[i]) }
                for i in 8..<16 { lo = lo << 8 | UInt64(raw[i]) }
                return (hi, lo)
            }
            // An IPv4-mapped IPv6 source (::ffff:a.b.c.d) is an IPv4 peer.
            if hi == 0, lo >> 32 == 0xffff {
                self.init(IPv4Address(UInt32(truncatingIfNeeded: lo)), port: port)
            } else {
                self.init(.v6(hi, lo), port: port)
            }
        default:
            return nil
        }
    }

    /// Calls `body` with this endpoint as a `sockaddr_in` or `sockaddr_in6` (for `sendto`),
    /// built from its bytes: no text, no allocation.
    public func withSockAddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        switch address {
        case .v4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = a.value.bigEndian
            return withUnsafePointer(to: &sin) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let hi, let lo):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                for i in 0..<8 { raw[i] = UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64(i))) }
                for i in 0..<8 { raw[8 + i] = UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64(i))) }
            }
            return withUnsafePointer(to: &sin6) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }
}

extension SocketAddress {
    /// The socket address at `sa` (IPv4 or IPv6 only).
    public init?(_ sa: UnsafePointer<sockaddr>) {
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            self = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        case AF_INET6:
            self = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        default:
            return nil
        }
    }
}
