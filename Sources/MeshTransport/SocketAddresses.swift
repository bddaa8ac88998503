import MeshCore
import NIOCore

extension Endpoint {
    /// The NIO socket address of this endpoint.
    public var socketAddress: SocketAddress? {
        switch address {
        case .v4:
            return try? SocketAddress(ipAddress: hostText, port: Int(port))
        case .v6:
            return try? SocketAddress(ipAddress: hostText, port: Int(port))
        }
    }

    /// The endpoint of a NIO IPv4 or IPv6 socket address (nil for Unix sockets).
    public init?(_ address: SocketAddress) {
        guard let ip = address.ipAddress, let port = address.port, let p = UInt16(exactly: port) else { return nil }
        // An IPv4-mapped IPv6 source is an IPv4 peer.
        let host = ip.hasPrefix("::ffff:") && ip.contains(".") ? String(ip.dropFirst(7)) : ip
        self.init(host.contains(":") ? "[\(host)]:\(p)" : "\(host):\(p)")
    }
}
