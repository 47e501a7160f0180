internal import TOMLKit

extension Configuration {
    /// Parses and checks a configuration file.
    ///
    /// - Parameters:
    ///   - text: the contents of the file.
    ///   - file: its path, for error messages.
    ///   - hostName: this machine's host name, the default of `cluster.node`. When no node has
    ///     exactly that name, its first label (`installer` of `installer.example.com`) is tried.
    /// - Throws: ``ConfigError`` for the first problem found: TOML syntax, an unknown section or
    ///   key, a value of the wrong type or out of range, or an inconsistent whole.
    public static func parse(_ text: String, file: String, hostName: String) throws(ConfigError) -> Configuration {
        if text.utf8.contains(0) {
            throw ConfigError(file: file, line: nil, message: "the file contains a NUL byte; it must be UTF-8 text")
        }
        if let line = escapedNULLine(text) {
            // TOMLKit hands strings over as C strings: one would end at the NUL, silently cut short.
            throw ConfigError(file: file, line: line, message: "a string holds an escaped NUL character (\\u0000), which is not allowed")
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let position = error.source.begin
            throw ConfigError(
                file: file,
                line: position.line > 0 ? position.line : nil,
                message: "TOML syntax error at column \(position.column): \(error.description)"
            )
        } catch {
            throw ConfigError(file: file, line: nil, message: "TOML syntax error: \(error)")
        }
        let parser = ConfigParser(file: file, locator: LineLocator(text), hostName: hostName)
        return try parser.parse(root)
    }
}

/// The line of the first `\u0000` or `\U00000000` escape (after an odd number of backslashes),
/// nil when there is none.
func escapedNULLine(_ text: String) -> Int? {
    let bytes = Array(text.utf8)
    var line = 1
    var backslashes = 0
    for (index, byte) in bytes.enumerated() {
        if byte == UInt8(ascii: "\n") { line += 1 }
        if byte == UInt8(ascii: "\\") {
            backslashes += 1
            continue
        }
        defer { backslashes = 0 }
        guard backslashes % 2 == 1 else { continue }
        let rest = bytes[index...]
        if rest.starts(with: Array("u0000".utf8)) || rest.starts(with: Array("U00000000".utf8)) { return line }
    }
    return nil
}

/// Reads the TOML tree section by section; see `Config+Validation.swift` for the checks of
/// the whole.
struct ConfigParser {
    let file: String
    let locator: LineLocator
    let hostName: String

    static let sections = ["cluster", "nodes", "addresses", "database", "units", "fencing", "sync", "health", "checks"]
    static let clusterKeys = [
        "name", "node", "auth_key_file", "port", "interval_ms", "warn_ms", "dead_ms", "auto_failover",
        "auto_failback", "tie_breakers", "tie_breaker_interval_ms", "service_loss_handover",
    ]
    static let nodeKeys = ["name", "priority", "addresses"]
    static let addressKeys = ["address", "interface", "arp_count", "arp_interval_ms"]
    static let databaseKeys = ["unit", "socket_directory", "port", "data_directory", "user", "max_lag_bytes", "synchronous"]
    static let syncKeys = ["path", "pull", "interval_s", "exclude", "delete"]
    static let unitsKeys = ["start"]
    static let fencingKeys = ["command"]

    func parse(_ root: TOMLTable) throws(ConfigError) -> Configuration {
        try checkSections(root)
        let cluster = try section(root, "cluster")
        var settings = try parseCluster(cluster)
        let nodes = try parseNodes(root)
        try checkTiming(settings, cluster)
        try checkNodes(nodes)
        settings.node = try resolveLocalNode(cluster, nodes: nodes)

        var addresses: [FloatingAddress] = []
        for (index, reader) in try elements(root, "addresses").enumerated() {
            addresses.append(try parseFloatingAddress(reader))
            if let earlier = addresses.dropLast().firstIndex(where: { $0.address == addresses[index].address }) {
                throw reader.error(at: "address", "\(reader.name("address")) = \"\(addresses[index])\" is already listed as addresses[\(earlier)]")
            }
        }
        let database = try root.contains(key: "database") ? parseDatabase(try section(root, "database")) : nil
        let units = try parseUnits(try section(root, "units"))
        let fencing = try root.contains(key: "fencing") ? parseFencing(try section(root, "fencing")) : nil
        var trees: [SyncTree] = []
        for reader in try elements(root, "sync") {
            let tree = try parseSyncTree(reader)
            if let earlier = trees.firstIndex(where: { $0.path == tree.path }) {
                throw reader.error(at: "path", "\(reader.name("path")) = \"\(tree.path)\" is already listed as sync[\(earlier)]")
            }
            trees.append(tree)
        }
        let health = try parseHealth(try section(root, "health"))
        var checks: [(HealthCheck, SectionReader)] = []
        for reader in try elements(root, "checks") { checks.append((try parseCheck(reader), reader)) }
        try checkResourceNames(checks, units: units)
        return Configuration(
            cluster: settings, nodes: nodes.map(\.settings), addresses: addresses, database: database,
            units: units, fencingCommand: fencing, sync: trees, health: health, checks: checks.map(\.0)
        )
    }

    // MARK: - Sections

    private func checkSections(_ root: TOMLTable) throws(ConfigError) {
        for key in root.keys where !Self.sections.contains(key) {
            let value = root[key]
            let hint = suggestion(for: key, among: Self.sections).map { "; did you mean [\($0)]?" } ?? ""
            if value?.type == .table {
                let line = locator.line(ofTable: .init(name: key, index: nil))
                throw ConfigError(file: file, line: line, message: "unknown section [\(key)]\(hint)")
            }
            if let array = value?.array, !array.isEmpty, array.allSatisfy({ $0.type == .table }) {
                let line = locator.line(ofTable: .init(name: key, index: 0)) ?? locator.line(ofKey: key, in: .root)
                throw ConfigError(file: file, line: line, message: "unknown section [[\(key)]]\(hint)")
            }
            let known = Self.sections.map { "[\($0)]" }.joined(separator: ", ")
            throw ConfigError(
                file: file, line: locator.line(ofKey: key, in: .root),
                message: "unknown key '\(key)' outside any section; keys belong in a section (\(known))"
            )
        }
    }

    /// The reader of a plain table (`[name]`); an empty one when the section is absent.
    func section(_ root: TOMLTable, _ name: String) throws(ConfigError) -> SectionReader {
        let location = LineLocator.Table(name: name, index: nil)
        let line = locator.line(ofTable: location) ?? locator.line(ofTable: .init(name: name, index: 0))
            ?? locator.line(ofKey: name, in: .root)
        guard let value = root[name] else {
            return SectionReader(table: TOMLTable(), location: location, displayName: name, parser: self, headerLine: nil)
        }
        guard let table = value.table else {
            let form = value.type == .array ? " ([[\(name)]] declares an array of tables; write [\(name)])" : ""
            throw ConfigError(file: file, line: line, message: "\(name) must be a table, not \(Self.describe(value))\(form)")
        }
        return SectionReader(table: table, location: location, displayName: name, parser: self, headerLine: line)
    }

    /// The readers of the elements of an array of tables (`[[name]]`); none when absent.
    func elements(_ root: TOMLTable, _ name: String) throws(ConfigError) -> [SectionReader] {
        guard let value = root[name] else { return [] }
        let rootLine = locator.line(ofKey: name, in: .root) ?? locator.line(ofTable: .init(name: name, index: nil))
        guard let array = value.array else {
            let form = value.type == .table ? " ([\(name)] declares one table; write [[\(name)]] for each entry)" : ""
            throw ConfigError(
                file: file, line: rootLine,
                message: "\(name) must be an array of tables ([[\(name)]]), not \(Self.describe(value))\(form)"
            )
        }
        var readers: [SectionReader] = []
        for index in 0..<array.count {
            let location = LineLocator.Table(name: name, index: index)
            let line = locator.line(ofTable: location) ?? rootLine
            guard let table = array[index].table else {
                throw ConfigError(
                    file: file, line: line,
                    message: "\(name)[\(index)] must be a table, not \(Self.describe(array[index]))"
                )
            }
            readers.append(
                SectionReader(table: table, location: location, displayName: "\(name)[\(index)]", parser: self, headerLine: line)
            )
        }
        return readers
    }

    // MARK: - Helpers

    /// "an integer", "a string", ... for messages.
    static func describe(_ value: any TOMLValueConvertible) -> String {
        switch value.type {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a floating-point number"
        case .bool: "a boolean"
        case .date: "a date"
        case .time: "a time"
        case .dateTime: "a date-time"
        }
    }

    /// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
    func suggestion(for word: String, among candidates: [String]) -> String? {
        let scored = candidates.map { ($0, Self.editDistance(word.lowercased(), $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        if best.1 <= max(2, word.count / 3) { return best.0 }
        // A shortened word: "fence" for "fencing", "db" is too short to guess.
        let lowered = Array(word.lowercased())
        func commonPrefix(_ candidate: String) -> Int {
            zip(lowered, candidate).prefix(while: { $0 == $1 }).count
        }
        guard let closest = candidates.max(by: { commonPrefix($0) < commonPrefix($1) }),
            commonPrefix(closest) >= 4
        else { return nil }
        return closest
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars)
        let b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = Array(repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Typed, located access to the keys of one table.
struct SectionReader {
    let table: TOMLTable
    let location: LineLocator.Table
    /// `cluster`, `nodes[1]`, ...
    let displayName: String
    let parser: ConfigParser
    /// The line of the table's header (or of the key defining it inline).
    let headerLine: Int?

    var isPresent: Bool { headerLine != nil || !table.isEmpty }

    func name(_ key: String) -> String { "\(displayName).\(key)" }

    func contains(_ key: String) -> Bool { table.contains(key: key) }

    /// The line of `key`, else of the table's header.
    func line(of key: String?) -> Int? {
        guard let key else { return headerLine }
        return parser.locator.line(ofKey: key, in: location)
            ?? (location.index == nil ? parser.locator.line(ofTable: .init(name: "\(location.name).\(key)", index: nil)) : nil)
            ?? headerLine
    }

    func error(at key: String?, _ message: String) -> ConfigError {
        ConfigError(file: parser.file, line: line(of: key), message: message)
    }

    /// Refuses any key not in `known`, suggesting the closest known one.
    func checkKeys(_ known: [String]) throws(ConfigError) {
        for key in table.keys where !known.contains(key) {
            let hint = parser.suggestion(for: key, among: known).map { "; did you mean \(name($0))?" }
                ?? "; known keys are \(known.joined(separator: ", "))"
            throw error(at: key, "unknown key \(name(key))\(hint)")
        }
    }

    private func typeError(_ key: String, _ expected: String, _ value: any TOMLValueConvertible) -> ConfigError {
        error(at: key, "\(name(key)) must be \(expected), not \(ConfigParser.describe(value))")
    }

    func string(_ key: String, allowEmpty: Bool = false) throws(ConfigError) -> String? {
        guard let value = table[key] else { return nil }
        guard let string = value.string else { throw typeError(key, "a string", value) }
        if !allowEmpty && string.isEmpty { throw error(at: key, "\(name(key)) must not be empty") }
        return string
    }

    func int(_ key: String, in range: ClosedRange<Int>? = nil, unit: String = "") throws(ConfigError) -> Int? {
        guard let value = table[key] else { return nil }
        guard value.type == .int, let int = value.int else { throw typeError(key, "an integer", value) }
        if let range, !range.contains(int) {
            if range.upperBound == Int.max {
                throw error(at: key, "\(name(key)) = \(int) must be at least \(range.lowerBound)\(unit)")
            }
            throw error(
                at: key, "\(name(key)) = \(int) must be between \(range.lowerBound) and \(range.upperBound)\(unit)"
            )
        }
        return int
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = table[key] else { return nil }
        guard let bool = value.bool else { throw typeError(key, "true or false", value) }
        return bool
    }

    func stringArray(_ key: String) throws(ConfigError) -> [String]? {
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw typeError(key, "an array of strings", value) }
        var result: [String] = []
        for index in 0..<array.count {
            guard let string = array[index].string else {
                throw error(at: key, "\(name(key))[\(index)] must be a string, not \(ConfigParser.describe(array[index]))")
            }
            result.append(string)
        }
        return result
    }

    /// An array of IP addresses, each checked.
    func addressArray(_ key: String) throws(ConfigError) -> [IPAddress]? {
        guard let strings = try stringArray(key) else { return nil }
        var result: [IPAddress] = []
        for (index, text) in strings.enumerated() {
            guard let address = IPAddress(text) else {
                throw error(at: key, "\(name(key))[\(index)] = \"\(text)\" is not a valid IP address")
            }
            result.append(address)
        }
        return result
    }
}
