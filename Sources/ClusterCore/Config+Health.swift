// `[health]` and `[[checks]]`: how kusu-hbd watches what the active node serves (the KUSU
// units, the database, optional checks) and what it does when something fails.

/// `[health]`: the recovery policy. Pacemaker's `migration-threshold` and `failure-timeout`
/// under the names administrators know, plus the database's health query.
public struct HealthSettings: Sendable, Equatable {
    /// Hand over to a healthy, in-sync standby when a resource cannot be kept healthy here.
    public var handover: Bool
    /// Failures of one resource within `failureTimeout` after which this node gives it up.
    public var migrationThreshold: Int
    /// A failure older than this is forgotten; nil: never (only `kusu-ha resource cleanup`).
    public var failureTimeout: Duration?
    /// kusu-ha starts a unit again that stopped or ended `failed` on the active node (after
    /// systemd's own `Restart=` gave up, or where it has none).
    public var restartUnits: Bool
    /// How often the effector queries the database.
    public var databaseInterval: Duration
    /// A database that has answered no query for this long is unhealthy (hung or refusing).
    public var databaseTimeout: Duration

    public init(
        handover: Bool = true, migrationThreshold: Int = 3, failureTimeout: Duration? = .seconds(600),
        restartUnits: Bool = true, databaseInterval: Duration = .seconds(1), databaseTimeout: Duration = .seconds(3)
    ) {
        self.handover = handover
        self.migrationThreshold = migrationThreshold
        self.failureTimeout = failureTimeout
        self.restartUnits = restartUnits
        self.databaseInterval = databaseInterval
        self.databaseTimeout = databaseTimeout
    }
}

/// An `http://` URL with a literal IP address (kusu-hbd resolves no names: a DNS server that
/// hangs must not decide the health of the service).
public struct HTTPTarget: Sendable, Equatable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16
    /// The path and query, starting with "/".
    public var path: String

    public init(address: IPAddress, port: UInt16 = 80, path: String = "/") {
        self.address = address
        self.port = port
        self.path = path
    }

    /// Parses `http://ADDRESS[:PORT][/PATH]` (IPv6 in brackets); nil for anything else.
    public init?(url: String) {
        guard url.hasPrefix("http://") else { return nil }
        var rest = Substring(url.dropFirst("http://".count))
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        rest = rest[authorityEnd...]
        let host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
        } else {
            let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count) else { return nil }
            host = parts[0]
            if parts.count == 2 { portText = parts[1] }
        }
        guard let address = IPAddress(String(host)), authority.hasPrefix("[") != address.isIPv4 else { return nil }
        var port: UInt16 = 80
        if let portText {
            guard !portText.isEmpty, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let value = UInt16(portText), value > 0
            else { return nil }
            port = value
        }
        let path = rest.isEmpty ? "/" : String(rest)
        // One request line: printable ASCII (percent-encode the rest), no spaces, no fragment.
        guard path.utf8.allSatisfy({ (0x21...0x7E).contains($0) }), !path.contains("#") else { return nil }
        self.init(address: address, port: port, path: path)
    }

    /// The URL as written (normalised).
    public var description: String {
        let host = address.isIPv4 ? "\(address)" : "[\(address)]"
        return "http://\(host)\(port == 80 ? "" : ":\(port)")\(path)"
    }
}

/// One `[[checks]]` entry: a probe of what the active node serves, run by kusu-hbd
/// (unprivileged) while this node is active.
public struct HealthCheck: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// GET the URL; the answer's status must be `expectStatus`.
        case http(HTTPTarget, expectStatus: Int)
        /// A TCP connection to the address and port is accepted.
        case tcp(IPAddress, port: UInt16)
        /// A TFTP read request for `file` is answered with its first block.
        case tftp(IPAddress, port: UInt16, file: String)
        /// The command (absolute path and arguments, run as kusu-hbd's user) exits with 0.
        case command([String])

        /// "http", "tcp", "tftp", "command": the `kind` key.
        public var name: String {
            switch self {
            case .http: "http"
            case .tcp: "tcp"
            case .tftp: "tftp"
            case .command: "command"
            }
        }

        /// What is probed, in words: the URL, `address:port`, the TFTP URL, the program.
        public var target: String {
            switch self {
            case .http(let target, _): "\(target)"
            case .tcp(let address, let port): address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
            case .tftp(let address, let port, let file):
                "tftp://\(address.isIPv4 ? "\(address)" : "[\(address)]")\(port == 69 ? "" : ":\(port)")/\(file)"
            case .command(let argv): argv.joined(separator: " ")
            }
        }
    }

    public var name: String
    public var kind: Kind
    public var interval: Duration
    public var timeout: Duration
    /// Consecutive failed probes before the check counts as failed.
    public var failures: Int

    public init(name: String, kind: Kind, interval: Duration = .seconds(2), timeout: Duration = .seconds(1), failures: Int = 3) {
        self.name = name
        self.kind = kind
        self.interval = interval
        self.timeout = timeout
        self.failures = failures
    }
}

extension ConfigParser {
    static let healthKeys = [
        "handover", "migration_threshold", "failure_timeout_s", "restart_units", "database_interval_ms", "database_timeout_ms",
    ]
    static let checkKeys = ["name", "kind", "url", "expect_status", "address", "port", "file", "command", "interval_ms", "timeout_ms", "failures"]
    static let checkKinds = ["http", "tcp", "tftp", "command"]
    static let maximumResourceNameBytes = ResourceName.maximumBytes

    func parseHealth(_ reader: SectionReader) throws(ConfigError) -> HealthSettings {
        try reader.checkKeys(Self.healthKeys)
        var settings = HealthSettings()
        if let flag = try reader.bool("handover") { settings.handover = flag }
        if let count = try reader.int("migration_threshold", in: 1...1000) { settings.migrationThreshold = count }
        if let seconds = try reader.int("failure_timeout_s", in: 0...31_536_000, unit: " seconds") {
            settings.failureTimeout = seconds == 0 ? nil : .seconds(seconds)
        }
        if let flag = try reader.bool("restart_units") { settings.restartUnits = flag }
        if let ms = try reader.int("database_interval_ms", in: 100...60_000, unit: " milliseconds") {
            settings.databaseInterval = .milliseconds(ms)
        }
        if let ms = try reader.int("database_timeout_ms", in: 200...600_000, unit: " milliseconds") {
            settings.databaseTimeout = .milliseconds(ms)
        }
        if settings.databaseTimeout < settings.databaseInterval * 2 {
            let key = reader.contains("database_timeout_ms") ? "database_timeout_ms" : "database_interval_ms"
            throw reader.error(
                at: key,
                "\(reader.name("database_timeout_ms")) = \(settings.databaseTimeout.wholeMilliseconds)"
                    + (reader.contains("database_timeout_ms") ? "" : " (the default)")
                    + " must be at least twice \(reader.name("database_interval_ms")) (2 × \(settings.databaseInterval.wholeMilliseconds)): "
                    + "a healthy database answers once per interval")
        }
        return settings
    }

    func parseCheck(_ reader: SectionReader) throws(ConfigError) -> HealthCheck {
        try reader.checkKeys(Self.checkKeys)
        guard let name = try reader.string("name") else {
            throw reader.error(at: nil, "\(reader.name("name")) is required: a short name for the check, e.g. \"repository\"")
        }
        guard Self.isValidResourceName(name) else {
            throw reader.error(
                at: "name",
                "\(reader.name("name")) = \"\(name)\" is not a valid check name (1 to \(Self.maximumResourceNameBytes) characters of "
                    + "letters, digits, '.', '_', '-', '@', ':' and '\\')")
        }
        guard let kindName = try reader.string("kind") else {
            throw reader.error(at: nil, "\(reader.name("kind")) is required: one of \(Self.checkKinds.joined(separator: ", "))")
        }
        // Keys that belong to another kind are refused: a typo'd kind must not silently ignore them.
        let used: [String: [String]] = [
            "http": ["url", "expect_status"], "tcp": ["address", "port"], "tftp": ["address", "port", "file"], "command": ["command"],
        ]
        guard let allowed = used[kindName] else {
            let hint = suggestion(for: kindName, among: Self.checkKinds).map { "; did you mean \"\($0)\"?" } ?? ""
            throw reader.error(
                at: "kind", "\(reader.name("kind")) = \"\(kindName)\" is not one of \(Self.checkKinds.joined(separator: ", "))\(hint)")
        }
        for key in ["url", "expect_status", "address", "port", "file", "command"] where reader.contains(key) && !allowed.contains(key) {
            throw reader.error(at: key, "\(reader.name(key)) does not apply to a check of kind \"\(kindName)\"")
        }
        let kind: HealthCheck.Kind
        switch kindName {
        case "http":
            guard let url = try reader.string("url") else {
                throw reader.error(at: nil, "\(reader.name("url")) is required for an http check, e.g. \"http://198.18.0.100/index.txt\"")
            }
            guard let target = HTTPTarget(url: url) else {
                throw reader.error(
                    at: "url",
                    "\(reader.name("url")) = \"\(url)\" is not an http:// URL with an IP address (http://ADDRESS[:PORT]/PATH; "
                        + "IPv6 in brackets; no host names and no https)")
            }
            let status = try reader.int("expect_status", in: 100...599) ?? 200
            kind = .http(target, expectStatus: status)
        case "tcp", "tftp":
            guard let text = try reader.string("address") else {
                throw reader.error(at: nil, "\(reader.name("address")) is required for a \(kindName) check")
            }
            guard let address = IPAddress(text) else {
                throw reader.error(at: "address", "\(reader.name("address")) = \"\(text)\" is not a valid IP address")
            }
            guard !address.isUnspecified else {
                throw reader.error(at: "address", "\(reader.name("address")) = \"\(text)\" is the unspecified address; give the address to probe")
            }
            if kindName == "tcp" {
                guard let port = try reader.int("port", in: 1...65535) else {
                    throw reader.error(at: nil, "\(reader.name("port")) is required for a tcp check")
                }
                kind = .tcp(address, port: UInt16(port))
            } else {
                let port = try reader.int("port", in: 1...65535) ?? 69
                guard let file = try reader.string("file") else {
                    throw reader.error(at: nil, "\(reader.name("file")) is required for a tftp check: a file the server offers, e.g. \"pxelinux.0\"")
                }
                guard file.utf8.count <= 255, file.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7F }) else {
                    throw reader.error(at: "file", "\(reader.name("file")) must be at most 255 printable characters")
                }
                kind = .tftp(address, port: UInt16(port), file: file)
            }
        default:
            guard let argv = try reader.stringArray("command"), let program = argv.first else {
                throw reader.error(at: reader.contains("command") ? "command" : nil,
                                   "\(reader.name("command")) is required for a command check: the program (absolute path) and its arguments")
            }
            guard program.hasPrefix("/") else {
                throw reader.error(at: "command", "\(reader.name("command"))[0] = \"\(program)\" must be an absolute path")
            }
            kind = .command(argv)
        }
        var check = HealthCheck(name: name, kind: kind)
        if let ms = try reader.int("interval_ms", in: 100...3_600_000, unit: " milliseconds") { check.interval = .milliseconds(ms) }
        if let ms = try reader.int("timeout_ms", in: 10...600_000, unit: " milliseconds") { check.timeout = .milliseconds(ms) }
        if let count = try reader.int("failures", in: 1...100) { check.failures = count }
        return check
    }

    /// Check names: unique, and neither "database" (reserved) nor a configured unit (the
    /// resources share one namespace).
    func checkResourceNames(_ checks: [(HealthCheck, SectionReader)], units: [String]) throws(ConfigError) {
        for (index, (check, reader)) in checks.enumerated() {
            if let earlier = checks[..<index].firstIndex(where: { $0.0.name == check.name }) {
                throw reader.error(at: "name", "\(reader.name("name")) = \"\(check.name)\" is already the name of checks[\(earlier)]")
            }
            if check.name == "database" || units.contains(check.name) {
                let what = check.name == "database" ? "reserved for the database" : "the name of a unit in [units] start"
                throw reader.error(at: "name", "\(reader.name("name")) = \"\(check.name)\" is \(what); choose another")
            }
        }
    }

    static func isValidResourceName(_ name: String) -> Bool { ResourceName.isValid(name) }
}

/// The names of resources (units, checks, "database"), as they travel in heartbeats.
public enum ResourceName {
    public static let maximumBytes = 64

    /// 1...64 bytes of letters, digits, `.`, `_`, `-`, `@`, `:` and `\\` (what a unit name may hold, and no more than a
    /// heartbeat carries per name).
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...maximumBytes).contains(bytes.count) else { return false }
        return bytes.allSatisfy { c in
            switch c {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
            case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "@"), UInt8(ascii: ":"), UInt8(ascii: "\\"): true
            default: false
            }
        }
    }
}
