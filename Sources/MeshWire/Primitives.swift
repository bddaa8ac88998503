import MeshCore

extension NodeID: WireCodable {
    public init(from reader: inout WireReader) throws(WireError) {
        self.init(try reader.readBytes32("node id"))
    }
    public func encode(to writer: inout WireWriter) { writer.writeBytes32(key) }
}

extension IPv4Address: WireCodable {
    public init(from reader: inout WireReader) throws(WireError) {
        self.init(try reader.readUInt32("ipv4 address"))
    }
    public func encode(to writer: inout WireWriter) { writer.writeUInt32(value) }
}

/// 4 bytes network address, 1 byte length; host bits must be clear.
extension IPv4Prefix: WireCodable {
    public init(from reader: inout WireReader) throws(WireError) {
        let start = reader
        let network = try reader.read(IPv4Address.self)
        let length = try reader.readUInt8("prefix length")
        do {
            try self.init(network: network, length: length)
        } catch {
            reader = start
            throw .invalidValue(field: "ipv4 prefix", reason: error.description)
        }
    }
    public func encode(to writer: inout WireWriter) {
        writer.write(network)
        writer.writeUInt8(length)
    }
}

/// A u8-length host string (at most 253 bytes, checked as HOST:PORT would be) then a u16 port.
extension HostPort: WireCodable {
    public init(from reader: inout WireReader) throws(WireError) {
        let start = reader
        let host = try reader.readString(.u8, limit: HostPort.maxHostLength, "endpoint host")
        let port = try reader.readUInt16("endpoint port")
        let text = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        do {
            self = try HostPort(parsing: text)
        } catch {
            reader = start
            throw .invalidValue(field: "endpoint", reason: error.description)
        }
    }
    public func encode(to writer: inout WireWriter) {
        writer.writeString(.u8, host)
        writer.writeUInt16(port)
    }
}

/// A family byte (4 or 6), the address (4 or 16 bytes), then a u16 port.
extension Endpoint: WireCodable {
    public init(from reader: inout WireReader) throws(WireError) {
        let start = reader
        let family = try reader.readUInt8("endpoint family")
        switch family {
        case 4:
            let a = try reader.read(IPv4Address.self)
            let port = try reader.readUInt16("endpoint port")
            self.init(a, port: port)
        case 6:
            let hi = try reader.readUInt64("endpoint address")
            let lo = try reader.readUInt64("endpoint address")
            let port = try reader.readUInt16("endpoint port")
            self.init(.v6(hi, lo), port: port)
        default:
            reader = start
            throw .invalidValue(field: "endpoint family", reason: "\(family) is neither 4 nor 6")
        }
    }

    public func encode(to writer: inout WireWriter) {
        switch address {
        case .v4(let a):
            writer.writeUInt8(4)
            writer.write(a)
        case .v6(let hi, let lo):
            writer.writeUInt8(6)
            writer.writeUInt64(hi)
            writer.writeUInt64(lo)
        }
        writer.writeUInt16(port)
    }
}
