import CSodium

/// URL-safe base64 without padding (RFC 4648 §5), through libsodium's constant-time
/// codec, so that secrets are never looked up in tables indexed by their bytes.
public enum Base64URL {
    static let variant = Int32(sodium_base64_VARIANT_URLSAFE_NO_PADDING)

    public static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        Sodium.ready()
        let cap = Int(sodium_base64_encoded_len(bytes.count, variant))
        var out = [CChar](repeating: 0, count: cap)
        _ = sodium_bin2base64(&out, cap, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, variant)
        let s = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        secureZeroC(&out)
        return s
    }

    public static func encode(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { encode($0) } }

    /// Decodes all of `text` (no whitespace, no padding), or nil if it is not valid.
    public static func decode(_ text: [UInt8]) -> [UInt8]? {
        Sodium.ready()
        guard !text.isEmpty else { return [] }
        var out = [UInt8](repeating: 0, count: text.count * 3 / 4 + 1)
        var len = 0
        let rc = text.withUnsafeBufferPointer { t in
            t.withMemoryRebound(to: CChar.self) { tc in
                sodium_base642bin(&out, out.count, tc.baseAddress, tc.count, nil, &len, nil, variant)
            }
        }
        guard rc == 0 else {
            secureZero(&out)
            return nil
        }
        let result = Array(out.prefix(len))
        secureZero(&out)
        return result
    }

    private static func secureZeroC(_ bytes: inout [CChar]) {
        bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { sodium_memzero(base, raw.count) }
        }
    }
}
