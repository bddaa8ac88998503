import CTun
import Foundation
import MeshCore

/// A TUN device (layer 3, no packet information header), made by this process and gone
/// when it closes. Address, MTU and up are set by ioctl; docs/overlay.md.
public final class TunDevice: @unchecked Sendable {
    public let name: String
    public let fd: Int32
    private let stopped = NSLock()
    private var isStopped = false
    private var reader: Thread?

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    static func failure(_ what: String, _ code: Int32) -> Failure {
        let e = -code
        switch e {
        case EPERM, EACCES:
            return Failure(description: "\(what): permission denied: a TUN device needs root (or CAP_NET_ADMIN); run as root, or pass --no-tun to run without one (membership, addresses and messages still work)")
        case ENOENT, ENODEV:
            return Failure(description: "\(what): /dev/net/tun is missing; load the tun module (modprobe tun) or, in a container, pass the device in; or pass --no-tun")
        case EBUSY:
            return Failure(description: "\(what): the device is in use by another program; choose another --tun name")
        default:
            return Failure(description: "\(what): \(String(cString: strerror(e)))")
        }
    }

    /// Opens (creates) the device `name` (at most 15 characters).
    public static func open(name: String) throws(Failure) -> TunDevice {
        guard !name.isEmpty, name.utf8.count <= 15, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw Failure(description: "--tun: '\(name)' is not a valid interface name: use 1-15 letters, digits, '-', '_' or '.'")
        }
        var actual = [CChar](repeating: 0, count: 16)
        let fd = mw_tun_open(name, &actual)
        guard fd >= 0 else { throw failure("cannot create TUN device \(name)", fd) }
        return TunDevice(name: String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), fd: fd)
    }

    init(name: String, fd: Int32) {
        self.name = name
        self.fd = fd
    }

    public func setMTU(_ mtu: Int) throws(Failure) {
        let rc = mw_if_set_mtu(name, Int32(mtu))
        guard rc == 0 else { throw Self.failure("cannot set the MTU of \(name) to \(mtu)", rc) }
    }

    public func setAddress(_ address: IPv4Address, prefixLength: Int) throws(Failure) {
        let rc = mw_if_set_ipv4(name, address.value, Int32(prefixLength))
        guard rc == 0 else { throw Self.failure("cannot give \(name) the address \(address)/\(prefixLength)", rc) }
    }

    /// Brings the device up, with IPv6 off on it (the overlay is IPv4; this keeps the
    /// kernel's router solicitations out of it).
    public func up() throws(Failure) {
        try? "1\n".write(toFile: "/proc/sys/net/ipv6/conf/\(name)/disable_ipv6", atomically: false, encoding: .utf8)
        let rc = mw_if_up(name)
        guard rc == 0 else { throw Self.failure("cannot bring \(name) up", rc) }
    }

    /// Writes one IP packet to the device (to the kernel).
    @discardableResult
    public func write(_ packet: [UInt8]) -> Bool {
        packet.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == packet.count
    }

    /// Reads packets on a thread of its own, handing each to `onPacket`, until `close`.
    public func startReading(_ onPacket: @escaping @Sendable ([UInt8]) -> Void) {
        let fd = self.fd
        let t = Thread { [weak self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while let self, !self.stopped.withLock({ self.isStopped }) {
                pfd.revents = 0
                let ready = poll(&pfd, 1, 200)
                if ready <= 0 { continue }
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n > 0 { onPacket(Array(buffer[0..<n])) } else if n < 0, errno != EINTR, errno != EAGAIN { break }
            }
        }
        t.name = "meshwork-tun-read"
        reader = t
        t.start()
    }

    /// Stops reading and closes the device (the kernel removes it).
    public func close() {
        let first = stopped.withLock { () -> Bool in
            let was = isStopped
            isStopped = true
            return !was
        }
        guard first else { return }
        // Let the reader see the flag (it polls every 200 ms) before the descriptor goes.
        Thread.sleep(forTimeInterval: 0.25)
        Glibc.close(fd)
    }
}
