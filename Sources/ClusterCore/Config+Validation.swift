internal import TOMLKit

/// A parsed `[[nodes]]` entry with its reader, for located errors in the checks of the whole.
struct ParsedNode {
    var settings: NodeSettings
    var reader: SectionReader
}

extension ConfigParser {
    static let maximumLinks = 8
    static let maximumNameBytes = 64
    /// PostgreSQL's NAMEDATALEN - 1: the longest application_name it keeps whole.
    static let maximumNodeNameBytes = 63

    // MARK: - [cluster]

    func parseCluster(_ reader: SectionReader) throws(ConfigError) -> ClusterSettings {
        try reader.checkKeys(Self.clusterKeys)
        var settings = ClusterSettings(node: "")
        if let name = try reader.string("name") {
            try checkWireName(name, "name", reader)
            settings.name = name
        }
        if let node = try reader.string("node") {
            try checkWireName(node, "node", reader)
            settings.node = node
        }
        if let path = try reader.string("auth_key_file") {
            try checkAbsolutePath(path, "auth_key_file", reader)
            settings.authKeyFile = path
        }
        if let port = try reader.int("port", in: 1...65535) { settings.port = UInt16(port) }
        if let ms = try reader.int("interval_ms", in: 10...60000, unit: " milliseconds") {
            settings.interval = .milliseconds(ms)
        }
        if let ms = try reader.int("warn_ms", in: 1...Int.max) { settings.warn = .milliseconds(ms) }
        if let ms = try reader.int("dead_ms", in: 1...Int.max) { settings.dead = .milliseconds(ms) }
        if let flag = try reader.bool("auto_failover") { settings.autoFailover = flag }
        if let flag = try reader.bool("auto_failback") { settings.autoFailback = flag }
        if let targets = try reader.addressArray("tie_breakers") { settings.tieBreakers = targets }
        if let ms = try reader.int("tie_breaker_interval_ms", in: 100...10000, unit: " milliseconds") {
            settings.tieBreakerInterval = .milliseconds(ms)
        }
        if let flag = try reader.bool("service_loss_handover") { settings.serviceLossHandover = flag }
        return settings
    }

    /// dead > 2 × interval, interval <= warn < dead.
    func checkTiming(_ settings: ClusterSettings, _ reader: SectionReader) throws(ConfigError) {
        func ms(_ d: Duration) -> Int64 { d.wholeMilliseconds }
        func shown(_ key: String, _ value: Int64) -> String {
            "\(reader.name(key)) = \(value)" + (reader.contains(key) ? "" : " (the default)")
        }
        func at(_ keys: String...) -> String? { keys.first(where: reader.contains) }
        let interval = ms(settings.interval)
        let warn = ms(settings.warn)
        let dead = ms(settings.dead)
        if dead <= 2 * interval {
            throw reader.error(
                at: at("dead_ms", "interval_ms"),
                "\(shown("dead_ms", dead)) must be greater than twice \(reader.name("interval_ms")) (2 × \(interval) = \(2 * interval))"
            )
        }
        if warn < interval {
            throw reader.error(
                at: at("warn_ms", "interval_ms"),
                "\(shown("warn_ms", warn)) must be at least \(reader.name("interval_ms")) (\(interval))"
            )
        }
        if warn >= dead {
            throw reader.error(
                at: at("warn_ms", "dead_ms"),
                "\(shown("warn_ms", warn)) must be less than \(reader.name("dead_ms")) (\(dead))"
            )
        }
    }

    // MARK: - [[nodes]]

    func parseNodes(_ root: TOMLTable) throws(ConfigError) -> [ParsedNode] {
        let readers = try elements(root, "nodes")
        guard readers.count == 2 else {
            if readers.isEmpty {
                throw ConfigError(
                    file: file, line: nil,
                    message: "no [[nodes]] are configured: exactly two are required, this node and its peer"
                )
            }
            let culprit = readers.count > 2 ? readers[2] : readers[0]
            throw culprit.error(
                at: nil, "\(readers.count) [[nodes]] are configured: exactly two are required, this node and its peer"
            )
        }
        var nodes: [ParsedNode] = []
        for reader in readers {
            try reader.checkKeys(Self.nodeKeys)
            guard let name = try reader.string("name") else {
                throw reader.error(at: nil, "\(reader.name("name")) is required")
            }
            try checkWireName(name, "name", reader)
            try checkNodeName(name, "name", reader)
            let priority = try reader.int("priority", in: 0...1000) ?? 0
            guard let addresses = try reader.addressArray("addresses") else {
                throw reader.error(at: nil, "\(reader.name("addresses")) is required: one address per heartbeat link")
            }
            guard !addresses.isEmpty else {
                throw reader.error(at: "addresses", "\(reader.name("addresses")) must list at least one address (one per heartbeat link)")
            }
            guard addresses.count <= Self.maximumLinks else {
                throw reader.error(
                    at: "addresses",
                    "\(reader.name("addresses")) lists \(addresses.count) addresses; at most \(Self.maximumLinks) heartbeat links are supported"
                )
            }
            if let index = addresses.firstIndex(where: \.isUnspecified) {
                throw reader.error(
                    at: "addresses",
                    "\(reader.name("addresses"))[\(index)] = \"\(addresses[index])\" is the unspecified address; give the node's address on that link"
                )
            }
            nodes.append(ParsedNode(settings: NodeSettings(name: name, priority: priority, addresses: addresses), reader: reader))
        }
        return nodes
    }

    /// Distinct names, the same number of links, the same family per link, distinct addresses.
    func checkNodes(_ nodes: [ParsedNode]) throws(ConfigError) {
        let (first, second) = (nodes[0], nodes[1])
        if first.settings.name == second.settings.name {
            throw second.reader.error(
                at: "name",
                "\(second.reader.name("name")) = \"\(second.settings.name)\" is the same as \(first.reader.name("name")); the two nodes need different names"
            )
        }
        let counts = (first.settings.addresses.count, second.settings.addresses.count)
        if counts.0 != counts.1 {
            func plural(_ n: Int) -> String { n == 1 ? "1 address" : "\(n) addresses" }
            throw second.reader.error(
                at: "addresses",
                "\(second.reader.name("addresses")) lists \(plural(counts.1)) but \(first.reader.name("addresses")) lists \(plural(counts.0)); both nodes need one address per heartbeat link"
            )
        }
        for link in 0..<counts.0 {
            let a = first.settings.addresses[link]
            let b = second.settings.addresses[link]
            if a.isIPv4 != b.isIPv4 {
                func family(_ address: IPAddress) -> String { address.isIPv4 ? "IPv4" : "IPv6" }
                throw second.reader.error(
                    at: "addresses",
                    "\(second.reader.name("addresses"))[\(link)] = \"\(b)\" is \(family(b)) but \(first.reader.name("addresses"))[\(link)] = \"\(a)\" is \(family(a)); link \(link) must use the same address family on both nodes"
                )
            }
        }
        var seen: [IPAddress: String] = [:]
        for node in nodes {
            for (index, address) in node.settings.addresses.enumerated() {
                let here = "\(node.reader.name("addresses"))[\(index)]"
                if let earlier = seen[address] {
                    throw node.reader.error(at: "addresses", "\(here) = \"\(address)\" is already used by \(earlier)")
                }
                seen[address] = here
            }
        }
    }

    /// `cluster.node`, or the host name (or its first label), which must name one of the nodes.
    func resolveLocalNode(_ cluster: SectionReader, nodes: [ParsedNode]) throws(ConfigError) -> String {
        let names = nodes.map(\.settings.name)
        let listed = names.joined(separator: ", ")
        if let node = try cluster.string("node") {
            guard names.contains(node) else {
                throw cluster.error(at: "node", "this node '\(node)' (cluster.node) is not listed in [[nodes]] (\(listed))")
            }
            return node
        }
        if names.contains(hostName) { return hostName }
        let shortName = String(hostName.prefix(while: { $0 != "." }))
        if !shortName.isEmpty && names.contains(shortName) { return shortName }
        throw ConfigError(
            file: file, line: nil,
            message: "this node '\(hostName)' (the host name; set cluster.node to choose another) is not listed in [[nodes]] (\(listed))"
        )
    }

    // MARK: - [[addresses]]

    func parseFloatingAddress(_ reader: SectionReader) throws(ConfigError) -> FloatingAddress {
        try reader.checkKeys(Self.addressKeys)
        guard let text = try reader.string("address") else {
            throw reader.error(at: nil, "\(reader.name("address")) is required, e.g. \"198.18.0.100/24\"")
        }
        let shown = "\(reader.name("address")) = \"\(text)\""
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            if parts.count == 1, let address = IPAddress(text) {
                let example = "\(address)/\(address.isIPv4 ? 24 : 64)"
                throw reader.error(at: "address", "\(shown) needs a prefix length, e.g. \"\(example)\"")
            }
            throw reader.error(at: "address", "\(shown) is not an address with a prefix length, e.g. \"198.18.0.100/24\"")
        }
        guard let address = IPAddress(String(parts[0])) else {
            throw reader.error(at: "address", "\(shown): '\(parts[0])' is not a valid IP address")
        }
        let prefixText = parts[1]
        let limit = address.maximumPrefixLength
        guard (1...3).contains(prefixText.utf8.count), prefixText.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let prefix = Int(prefixText), prefix <= limit
        else {
            throw reader.error(
                at: "address",
                "\(shown): the prefix length must be between 0 and \(limit) for an \(address.isIPv4 ? "IPv4" : "IPv6") address"
            )
        }
        guard let interface = try reader.string("interface") else {
            throw reader.error(at: nil, "\(reader.name("interface")) is required: the network interface that holds the address")
        }
        guard Self.isValidInterfaceName(interface) else {
            throw reader.error(
                at: "interface",
                "\(reader.name("interface")) = \"\(interface)\" is not a valid interface name (1 to 15 characters, no '/', ':' or whitespace)"
            )
        }
        let arpCount = try reader.int("arp_count", in: 0...100) ?? 5
        let arpInterval = try reader.int("arp_interval_ms", in: 1...10000, unit: " milliseconds") ?? 200
        return FloatingAddress(
            address: address, prefixLength: prefix, interface: interface, arpCount: arpCount,
            arpInterval: .milliseconds(arpInterval)
        )
    }

    // MARK: - [database], [units], [fencing]

    func parseDatabase(_ reader: SectionReader) throws(ConfigError) -> DatabaseSettings {
        try reader.checkKeys(Self.databaseKeys)
        var settings = DatabaseSettings()
        if let unit = try reader.string("unit") {
            try checkUnitName(unit, reader.name("unit"), "unit", reader)
            settings.unit = unit
        }
        if let path = try reader.string("socket_directory") {
            try checkAbsolutePath(path, "socket_directory", reader)
            settings.socketDirectory = path
        }
        if let port = try reader.int("port", in: 1...65535) { settings.port = UInt16(port) }
        if let path = try reader.string("data_directory") {
            try checkAbsolutePath(path, "data_directory", reader)
            settings.dataDirectory = path
        }
        if let user = try reader.string("user") { settings.user = user }
        if let lag = try reader.int("max_lag_bytes", in: 0...Int.max) { settings.maxLagBytes = UInt64(lag) }
        if let mode = try reader.string("synchronous") {
            guard let parsed = SynchronousMode(rawValue: mode) else {
                let known = SynchronousMode.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                throw reader.error(at: "synchronous", "\(reader.name("synchronous")) = \"\(mode)\" is not one of \(known)")
            }
            settings.synchronous = parsed
        }
        return settings
    }

    func parseSyncTree(_ reader: SectionReader) throws(ConfigError) -> SyncTree {
        try reader.checkKeys(Self.syncKeys)
        guard let path = try reader.string("path") else {
            throw reader.error(at: nil, "\(reader.name("path")) is required: the directory to keep on the standby")
        }
        try checkAbsolutePath(path, "path", reader)
        let components = path.split(separator: "/")
        if components.isEmpty || components.contains("..") || components.contains(".") {
            throw reader.error(at: "path", "\(reader.name("path")) = \"\(path)\" must name a directory below / without '.' or '..'")
        }
        var tree = SyncTree(path: "/" + components.joined(separator: "/"))
        if let pull = try reader.bool("pull") { tree.pull = pull }
        if let seconds = try reader.int("interval_s", in: 1...86400, unit: " seconds") { tree.interval = .seconds(seconds) }
        if let patterns = try reader.stringArray("exclude") {
            for (index, pattern) in patterns.enumerated() where pattern.isEmpty || pattern.contains("\n") {
                throw reader.error(at: "exclude", "\(reader.name("exclude"))[\(index)] must be a non-empty one-line rsync pattern")
            }
            tree.exclude = patterns
        }
        if let delete = try reader.bool("delete") { tree.delete = delete }
        return tree
    }

    func parseUnits(_ reader: SectionReader) throws(ConfigError) -> [String] {
        try reader.checkKeys(Self.unitsKeys)
        let units = try reader.stringArray("start") ?? []
        for (index, unit) in units.enumerated() {
            let shown = "\(reader.name("start"))[\(index)]"
            try checkUnitName(unit, shown, "start", reader)
            // Units are resources whose names travel in heartbeats (what a node gave up).
            if unit.utf8.count > ResourceName.maximumBytes {
                throw reader.error(at: "start", "\(shown) = \"\(unit)\" is too long: kusu-ha watches units of at most \(ResourceName.maximumBytes) characters")
            }
            if let earlier = units[..<index].firstIndex(of: unit) {
                throw reader.error(at: "start", "\(shown) = \"\(unit)\" is already listed as \(reader.name("start"))[\(earlier)]")
            }
        }
        return units
    }

    func parseFencing(_ reader: SectionReader) throws(ConfigError) -> [String] {
        try reader.checkKeys(Self.fencingKeys)
        guard let command = try reader.stringArray("command") else {
            throw reader.error(at: nil, "\(reader.name("command")) is required when [fencing] is present")
        }
        guard let program = command.first else {
            throw reader.error(at: "command", "\(reader.name("command")) must not be empty: give the program and its arguments")
        }
        guard !program.isEmpty else {
            throw reader.error(at: "command", "\(reader.name("command"))[0] must name the program to run, not be empty")
        }
        guard program.hasPrefix("/") else {
            throw reader.error(
                at: "command",
                "\(reader.name("command"))[0] = \"\(program)\" must be an absolute path (starting with '/'): the program is not looked up in PATH")
        }
        return command
    }

    // MARK: - Value checks

    private func checkWireName(_ name: String, _ key: String, _ reader: SectionReader) throws(ConfigError) {
        if name.utf8.count > Self.maximumNameBytes {
            throw reader.error(at: key, "\(reader.name(key)) = \"\(name)\" is too long: at most \(Self.maximumNameBytes) bytes")
        }
        if let control = name.unicodeScalars.first(where: { $0.properties.generalCategory == .control }) {
            throw reader.error(
                at: key, "\(reader.name(key)) contains the control character U+\(String(control.value, radix: 16, uppercase: true).leftPadded(4)): not allowed in a name")
        }
    }

    /// A node's name is also its PostgreSQL application_name, which synchronous_standby_names
    /// must match: PostgreSQL keeps only printable ASCII (it turns anything else into '?') and
    /// at most 63 bytes, so a name outside that would never match and commits would wait for a
    /// standby that never comes.
    private func checkNodeName(_ name: String, _ key: String, _ reader: SectionReader) throws(ConfigError) {
        if name.utf8.count > Self.maximumNodeNameBytes {
            throw reader.error(
                at: key, "\(reader.name(key)) = \"\(name)\" is too long for a node: at most \(Self.maximumNodeNameBytes) bytes (it is the database's application_name)")
        }
        if let bad = name.unicodeScalars.first(where: { !(0x21...0x7E).contains($0.value) }) {
            throw reader.error(
                at: key,
                "\(reader.name(key)) = \"\(name)\" contains \(bad == " " ? "a space" : "\"\(bad)\""): a node name is printable ASCII without spaces (it is the database's application_name)")
        }
    }

    private func checkAbsolutePath(_ path: String, _ key: String, _ reader: SectionReader) throws(ConfigError) {
        if !path.hasPrefix("/") {
            throw reader.error(at: key, "\(reader.name(key)) = \"\(path)\" must be an absolute path (starting with '/')")
        }
    }

    private func checkUnitName(_ unit: String, _ shown: String, _ key: String, _ reader: SectionReader) throws(ConfigError) {
        guard Self.isValidUnitName(unit) else {
            let suffixes = Self.unitSuffixes.map { ".\($0)" }.joined(separator: ", ")
            throw reader.error(
                at: key, "\(shown) = \"\(unit)\" is not a valid systemd unit name (like \"apache2.service\"; known suffixes: \(suffixes))"
            )
        }
    }

    static let unitSuffixes = [
        "service", "socket", "target", "mount", "automount", "swap", "path", "timer", "slice", "scope", "device",
    ]

    /// A startable systemd unit name: `prefix[@instance].suffix` with a known suffix, at most
    /// 255 characters of `[A-Za-z0-9:_.\-\\]`, and a non-empty instance for a template.
    static func isValidUnitName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard bytes.count <= 255, let lastDot = bytes.lastIndex(of: UInt8(ascii: ".")) else { return false }
        let suffix = String(decoding: bytes[(lastDot + 1)...], as: UTF8.self)
        guard unitSuffixes.contains(suffix) else { return false }
        let stem = bytes[..<lastDot]
        func allowed(_ c: UInt8) -> Bool {
            switch c {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
            case UInt8(ascii: ":"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "\\"): true
            default: false
            }
        }
        let pieces = stem.split(separator: UInt8(ascii: "@"), omittingEmptySubsequences: false)
        guard (1...2).contains(pieces.count), pieces.allSatisfy({ !$0.isEmpty && $0.allSatisfy(allowed) }) else {
            return false
        }
        return true
    }

    /// Linux's `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
    static func isValidInterfaceName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...15).contains(bytes.count), name != ".", name != ".." else { return false }
        return bytes.allSatisfy { c in
            c != UInt8(ascii: "/") && c != UInt8(ascii: ":") && !(c == 0x20 || (0x09...0x0D).contains(c))
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
