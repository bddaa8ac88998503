/// The names people give meshes and nodes: ASCII letters, digits, `.`, `_` and `-`.
public enum Names {
    public static func isNameCharacter(_ c: Unicode.Scalar) -> Bool {
        c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "." || c == "_" || c == "-")
    }

    /// 1 to `limit` bytes, all name characters.
    public static func isValid(_ name: String, limit: Int) -> Bool {
        (1...limit).contains(name.utf8.count) && name.unicodeScalars.allSatisfy(isNameCharacter)
    }
}
