/// Finds the lines of keys and table headers in a TOML document.
///
/// TOMLKit does not expose source positions of values, so this small scanner walks the raw
/// text, tracking the current `[table]` or `[[array]]` (and its index), and records the line
/// where each `key =` starts. It understands comments, basic and literal strings (including
/// multi-line ones), multi-line arrays and inline tables (whose inner keys it does not
/// record), quoted keys and dotted keys. It never fails: on text it does not understand it
/// simply records less, and callers fall back to a header's line or to no line at all.
struct LineLocator: Sendable {
    /// A table: the dotted name of its header and, for an element of an array of tables
    /// (`[[name]]`), its index.
    struct Table: Hashable, Sendable {
        var name: String
        var index: Int?

        static let root = Table(name: "", index: nil)
    }

    private struct Location: Hashable {
        var table: Table
        var key: String
    }

    private var keyLines: [Location: Int] = [:]
    private var headerLines: [Table: Int] = [:]
    /// Tables created implicitly by dotted keys (`a.b = 1` creates table `a`).
    private var implicitTableLines: [Table: Int] = [:]

    init(_ text: String) {
        scan(Array(text.utf8))
    }

    /// The line (1-based) of `key = ...` in `table`, or `nil`.
    func line(ofKey key: String, in table: Table) -> Int? {
        keyLines[Location(table: table, key: key)]
    }

    /// The line of the header of `table` (`[name]` or the n-th `[[name]]`), or of the key
    /// that defines it inline (`name = { ... }`), or `nil`.
    func line(ofTable table: Table) -> Int? {
        if let line = headerLines[table] { return line }
        if table.index == nil {
            // `a.b = {...}` at the root, or `b = {...}` in [a].
            let parts = table.name.split(separator: ".").map(String.init)
            for split in stride(from: parts.count - 1, through: 0, by: -1) {
                let prefix = Table(name: parts[..<split].joined(separator: "."), index: nil)
                let key = parts[split...].joined(separator: ".")
                if let line = keyLines[Location(table: prefix, key: key)] { return line }
            }
        }
        return implicitTableLines[table]
    }

    // MARK: - Scanner

    private static let newline = UInt8(ascii: "\n")
    private static let hash = UInt8(ascii: "#")
    private static let quote = UInt8(ascii: "\"")
    private static let apostrophe = UInt8(ascii: "'")
    private static let backslash = UInt8(ascii: "\\")
    private static let equals = UInt8(ascii: "=")
    private static let dot = UInt8(ascii: ".")

    private static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D }

    private mutating func scan(_ text: [UInt8]) {
        var i = 0
        var line = 1
        var arrayCounts: [String: Int] = [:]
        var current = Table.root

        func skipBlanks() { while i < text.count && Self.isBlank(text[i]) { i += 1 } }
        func skipToEndOfLine() { while i < text.count && text[i] != Self.newline { i += 1 } }

        /// Reads a dotted key (or header name) up to one of `terminators`, outside quotes.
        func readKey(until terminators: Set<UInt8>) -> [String] {
            var parts: [String] = []
            var part: [UInt8] = []
            while i < text.count, !terminators.contains(text[i]), text[i] != Self.newline {
                let c = text[i]
                if c == Self.quote || c == Self.apostrophe {
                    i += 1
                    while i < text.count, text[i] != c, text[i] != Self.newline {
                        if c == Self.quote && text[i] == Self.backslash && i + 1 < text.count { i += 1 }
                        part.append(text[i])
                        i += 1
                    }
                    if i < text.count && text[i] == c { i += 1 }
                } else if c == Self.dot {
                    parts.append(String(decoding: part, as: UTF8.self))
                    part = []
                    i += 1
                } else {
                    if !Self.isBlank(c) { part.append(c) }
                    i += 1
                }
            }
            parts.append(String(decoding: part, as: UTF8.self))
            return parts
        }

        /// Skips a value, which may span lines (multi-line strings, arrays, inline tables).
        func skipValue() {
            var depth = 0
            while i < text.count {
                let c = text[i]
                if c == Self.newline {
                    line += 1
                    i += 1
                    if depth == 0 { return }
                } else if c == Self.hash {
                    skipToEndOfLine()
                } else if c == Self.quote || c == Self.apostrophe {
                    let triple = i + 2 < text.count && text[i + 1] == c && text[i + 2] == c
                    i += triple ? 3 : 1
                    while i < text.count {
                        if text[i] == Self.newline {
                            if !triple { break }  // an unterminated string; let TOMLKit complain
                            line += 1
                        } else if c == Self.quote && text[i] == Self.backslash {
                            i += 1
                            if i < text.count && text[i] == Self.newline { line += 1 }
                        } else if text[i] == c {
                            if !triple {
                                i += 1
                                break
                            }
                            if i + 2 < text.count && text[i + 1] == c && text[i + 2] == c {
                                i += 3
                                // A closing delimiter may be followed by up to two more quotes.
                                while i < text.count && text[i] == c { i += 1 }
                                break
                            }
                        }
                        i += 1
                    }
                } else {
                    if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") { depth += 1 }
                    if c == UInt8(ascii: "]") || c == UInt8(ascii: "}") { depth = max(0, depth - 1) }
                    i += 1
                }
            }
        }

        while i < text.count {
            skipBlanks()
            guard i < text.count else { break }
            let c = text[i]
            if c == Self.newline {
                line += 1
                i += 1
                continue
            }
            if c == Self.hash {
                skipToEndOfLine()
                continue
            }
            if c == UInt8(ascii: "[") {
                let isArray = i + 1 < text.count && text[i + 1] == UInt8(ascii: "[")
                i += isArray ? 2 : 1
                let name = readKey(until: [UInt8(ascii: "]")]).joined(separator: ".")
                if isArray {
                    let index = arrayCounts[name, default: 0]
                    arrayCounts[name] = index + 1
                    current = Table(name: name, index: index)
                } else {
                    current = Table(name: name, index: nil)
                }
                if headerLines[current] == nil { headerLines[current] = line }
                skipToEndOfLine()
                continue
            }
            let parts = readKey(until: [Self.equals])
            if i < text.count && text[i] == Self.equals {
                record(parts, in: current, line: line)
                i += 1
                skipValue()
            } else {
                skipToEndOfLine()
            }
        }
    }

    private mutating func record(_ parts: [String], in table: Table, line: Int) {
        let key = parts.joined(separator: ".")
        let location = Location(table: table, key: key)
        if keyLines[location] == nil { keyLines[location] = line }
        // `a.b = 1` in [t] is also key `b` of table `t.a`.
        guard parts.count > 1, table.index == nil else { return }
        for split in 1..<parts.count {
            let prefix = (table.name.isEmpty ? [] : [table.name]) + parts[..<split]
            let dotted = Location(
                table: Table(name: prefix.joined(separator: "."), index: nil),
                key: parts[split...].joined(separator: ".")
            )
            if keyLines[dotted] == nil { keyLines[dotted] = line }
            if implicitTableLines[dotted.table] == nil { implicitTableLines[dotted.table] = line }
        }
    }
}
