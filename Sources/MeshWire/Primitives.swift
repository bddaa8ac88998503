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
