import Foundation

/// Prints a value as JSON with stable, sorted field names (one object per invocation).
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// A line on standard error (notes and warnings that must not mix with data on stdout).
func printErr(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Rows of "Label:  value" with the values aligned.
func printFields(_ rows: [(String, String)]) {
    let width = (rows.map { $0.0.count }.max() ?? 0) + 2
    for (label, value) in rows {
        let head = label + ":"
        print(head + String(repeating: " ", count: max(1, width - head.count)) + value)
    }
}
