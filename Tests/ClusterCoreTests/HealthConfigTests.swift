import ClusterCore
import Testing

/// `[health]` and `[[checks]]` (Config+Health.swift), and the limit they put on `[units] start`.
///
/// Every snippet is appended to `minimalConfig` (7 lines) after a newline, so the snippet's
/// line `n` is line `7 + n` of the file.
enum HealthSnippet {
    static let firstLine = minimalConfig.split(separator: "\n", omittingEmptySubsequences: false).count

    static func text(_ snippet: String) -> String { minimalConfig + "\n" + snippet }

    static func parse(_ snippet: String) throws -> Configuration {
        try Configuration.parse(text(snippet), file: "kusu-ha.toml", hostName: "installer")
    }

    /// The absolute line of the snippet's line `n`.
    static func line(_ n: Int) -> Int { firstLine + n }
}

/// One refused snippet: the snippet's line (1-based, within the snippet) and the exact message.
struct HealthErrorCase: CustomTestStringConvertible, Sendable {
    var snippet: String
    var line: Int?
    var message: String

    init(_ snippet: String, line: Int?, _ message: String) {
        self.snippet = snippet
        self.line = line
        self.message = message
    }

    var testDescription: String { message }
}

@Suite struct HealthConfigTests {
    // MARK: - [health]

    @Test func defaultsWhenAbsent() throws {
        let config = try HealthSnippet.parse("")
        #expect(config.health == HealthSettings())
        #expect(config.checks == [])
        let defaults = HealthSettings()
        #expect(defaults.handover)
        #expect(defaults.migrationThreshold == 3)
        #expect(defaults.failureTimeout == .seconds(600))
        #expect(defaults.restartUnits)
        #expect(defaults.databaseInterval == .seconds(1))
        #expect(defaults.databaseTimeout == .seconds(3))
        // An empty [health] section is the same as none.
        #expect(try HealthSnippet.parse("[health]\n").health == HealthSettings())
    }

    @Test func everyHealthKeyIsParsed() throws {
        let config = try HealthSnippet.parse("""
            [health]
            handover = false
            migration_threshold = 5
            failure_timeout_s = 120
            restart_units = false
            database_interval_ms = 500
            database_timeout_ms = 1000
            """)
        #expect(config.health == HealthSettings(
            handover: false, migrationThreshold: 5, failureTimeout: .seconds(120), restartUnits: false,
            databaseInterval: .milliseconds(500), databaseTimeout: .milliseconds(1000)))
    }

    @Test(arguments: [
        // (snippet, expected settings)
        ("handover = true", HealthSettings(handover: true)),
        ("handover = false", HealthSettings(handover: false)),
        ("migration_threshold = 1", HealthSettings(migrationThreshold: 1)),
        ("migration_threshold = 1000", HealthSettings(migrationThreshold: 1000)),
        ("failure_timeout_s = 0", HealthSettings(failureTimeout: nil)),
        ("failure_timeout_s = 1", HealthSettings(failureTimeout: .seconds(1))),
        ("failure_timeout_s = 31536000", HealthSettings(failureTimeout: .seconds(31_536_000))),
        ("restart_units = false", HealthSettings(restartUnits: false)),
        ("database_interval_ms = 100", HealthSettings(databaseInterval: .milliseconds(100))),
        ("database_interval_ms = 1500", HealthSettings(databaseInterval: .milliseconds(1500))),
        ("database_timeout_ms = 2000", HealthSettings(databaseTimeout: .milliseconds(2000))),
        ("database_timeout_ms = 600000", HealthSettings(databaseTimeout: .milliseconds(600_000))),
        ("database_interval_ms = 60000\ndatabase_timeout_ms = 120000",
         HealthSettings(databaseInterval: .seconds(60), databaseTimeout: .seconds(120))),
    ])
    func oneHealthKey(snippet: String, expected: HealthSettings) throws {
        #expect(try HealthSnippet.parse("[health]\n" + snippet).health == expected)
    }

    /// The database timeout must be at least twice the interval, exactly 2× included.
    @Test func databaseTimeoutAgainstInterval() throws {
        let exactlyTwice = try HealthSnippet.parse("[health]\ndatabase_interval_ms = 700\ndatabase_timeout_ms = 1400\n")
        #expect(exactlyTwice.health.databaseTimeout == .milliseconds(1400))
        let error = try #require(parseError(HealthSnippet.text("[health]\ndatabase_interval_ms = 700\ndatabase_timeout_ms = 1399\n")))
        #expect(error.line == HealthSnippet.line(3))
        #expect(error.message.contains("health.database_timeout_ms = 1399"))
        #expect(error.message.contains("at least twice health.database_interval_ms"))
    }

    // MARK: - [[checks]]

    @Test func httpCheckWithDefaults() throws {
        let config = try HealthSnippet.parse("""
            [[checks]]
            name = "repository"
            kind = "http"
            url = "http://198.18.0.100/index.txt"
            """)
        #expect(config.checks == [
            HealthCheck(name: "repository", kind: .http(HTTPTarget(address: ip("198.18.0.100"), port: 80, path: "/index.txt"), expectStatus: 200))
        ])
        let check = config.checks[0]
        #expect(check.interval == .seconds(2))
        #expect(check.timeout == .seconds(1))
        #expect(check.failures == 3)
        #expect(check.kind.name == "http")
    }

    @Test func httpCheckWithEveryKey() throws {
        let config = try HealthSnippet.parse("""
            [[checks]]
            name = "web6"
            kind = "http"
            url = "http://[fd00::100]:8080/health?full=1"
            expect_status = 204
            interval_ms = 500
            timeout_ms = 250
            failures = 2
            """)
        #expect(config.checks == [
            HealthCheck(
                name: "web6",
                kind: .http(HTTPTarget(address: ip("fd00::100"), port: 8080, path: "/health?full=1"), expectStatus: 204),
                interval: .milliseconds(500), timeout: .milliseconds(250), failures: 2)
        ])
    }

    @Test func tcpTftpAndCommandChecks() throws {
        let config = try HealthSnippet.parse("""
            [[checks]]
            name = "dhcp-db"
            kind = "tcp"
            address = "198.18.0.100"
            port = 5432

            [[checks]]
            name = "tftp"
            kind = "tftp"
            address = "198.18.0.100"
            file = "pxelinux.0"

            [[checks]]
            name = "tftp6"
            kind = "tftp"
            address = "fd00::100"
            port = 1069
            file = "boot/grubx64.efi"

            [[checks]]
            name = "custom"
            kind = "command"
            command = ["/usr/lib/kusu/check-repo", "--quiet", "a b"]
            """)
        #expect(config.checks == [
            HealthCheck(name: "dhcp-db", kind: .tcp(ip("198.18.0.100"), port: 5432)),
            HealthCheck(name: "tftp", kind: .tftp(ip("198.18.0.100"), port: 69, file: "pxelinux.0")),
            HealthCheck(name: "tftp6", kind: .tftp(ip("fd00::100"), port: 1069, file: "boot/grubx64.efi")),
            HealthCheck(name: "custom", kind: .command(["/usr/lib/kusu/check-repo", "--quiet", "a b"])),
        ])
        #expect(config.checks.map(\.kind.name) == ["tcp", "tftp", "tftp", "command"])
    }

    @Test func checkNamesMayUseEveryResourceCharacter() throws {
        let name = "Az09._-@:\\x"  // TOML "\\" is one backslash
        let config = try HealthSnippet.parse("""
            [[checks]]
            name = "Az09._-@:\\\\x"
            kind = "tcp"
            address = "198.18.0.1"
            port = 1
            """)
        #expect(config.checks.map(\.name) == [name])
        let longest = String(repeating: "c", count: 64)
        let long = try HealthSnippet.parse("[[checks]]\nname = \"\(longest)\"\nkind = \"tcp\"\naddress = \"198.18.0.1\"\nport = 1\n")
        #expect(long.checks.map(\.name) == [longest])
    }

    @Test func aCheckMayBeNamedLikeAUnitThatIsNotListed() throws {
        // A check named like a unit that [units] start does not list is fine.
        let config = try HealthSnippet.parse("""
            [units]
            start = ["apache2.service"]

            [[checks]]
            name = "nginx.service"
            kind = "tcp"
            address = "198.18.0.1"
            port = 80
            """)
        #expect(config.units == ["apache2.service"])
        #expect(config.checks.map(\.name) == ["nginx.service"])
    }

    @Test func unitNamesUpToSixtyFourCharactersAreAccepted() throws {
        let unit = String(repeating: "u", count: 56) + ".service"  // 64 bytes
        #expect(unit.utf8.count == 64)
        let config = try HealthSnippet.parse("[units]\nstart = [\"\(unit)\"]\n")
        #expect(config.units == [unit])
    }

    // MARK: - Refusals

    static let longUnit = String(repeating: "u", count: 57) + ".service"  // 65 bytes
    static let validName =
        "(1 to 64 characters of letters, digits, '.', '_', '-', '@', ':' and '\\')"
    static let badURL =
        "is not an http:// URL with an IP address (http://ADDRESS[:PORT]/PATH; IPv6 in brackets; no host names and no https)"
    static func http(_ url: String) -> String { "[[checks]]\nname = \"web\"\nkind = \"http\"\nurl = \"\(url)\"\n" }
    static func tcp(_ extra: String) -> String { "[[checks]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"198.18.0.1\"\nport = 5432\n" + extra }

    static let cases: [HealthErrorCase] = [
        // [health]
        HealthErrorCase("[health]\nhandovr = true\n", line: 2, "unknown key health.handovr; did you mean health.handover?"),
        HealthErrorCase("[health]\nmigration_treshold = 2\n", line: 2,
                        "unknown key health.migration_treshold; did you mean health.migration_threshold?"),
        HealthErrorCase("[health]\ncolour = 1\n", line: 2,
                        "unknown key health.colour; known keys are handover, migration_threshold, failure_timeout_s, restart_units, database_interval_ms, database_timeout_ms"),
        HealthErrorCase("[health]\nhandover = \"yes\"\n", line: 2, "health.handover must be true or false, not a string"),
        HealthErrorCase("[health]\nrestart_units = 1\n", line: 2, "health.restart_units must be true or false, not an integer"),
        HealthErrorCase("[health]\nmigration_threshold = 0\n", line: 2, "health.migration_threshold = 0 must be between 1 and 1000"),
        HealthErrorCase("[health]\nmigration_threshold = 1001\n", line: 2, "health.migration_threshold = 1001 must be between 1 and 1000"),
        HealthErrorCase("[health]\nfailure_timeout_s = -1\n", line: 2, "health.failure_timeout_s = -1 must be between 0 and 31536000 seconds"),
        HealthErrorCase("[health]\nfailure_timeout_s = 31536001\n", line: 2,
                        "health.failure_timeout_s = 31536001 must be between 0 and 31536000 seconds"),
        HealthErrorCase("[health]\nfailure_timeout_s = 1.5\n", line: 2, "health.failure_timeout_s must be an integer, not a floating-point number"),
        HealthErrorCase("[health]\ndatabase_interval_ms = 99\n", line: 2,
                        "health.database_interval_ms = 99 must be between 100 and 60000 milliseconds"),
        HealthErrorCase("[health]\ndatabase_timeout_ms = 199\n", line: 2,
                        "health.database_timeout_ms = 199 must be between 200 and 600000 milliseconds"),
        HealthErrorCase("[health]\ndatabase_interval_ms = 1000\ndatabase_timeout_ms = 1500\n", line: 3,
                        "health.database_timeout_ms = 1500 must be at least twice health.database_interval_ms (2 × 1000): a healthy database answers once per interval"),
        HealthErrorCase("[health]\ndatabase_timeout_ms = 1999\n", line: 2,
                        "health.database_timeout_ms = 1999 must be at least twice health.database_interval_ms (2 × 1000): a healthy database answers once per interval"),
        HealthErrorCase("[health]\nhandover = true\ndatabase_interval_ms = 2000\n", line: 3,
                        "health.database_timeout_ms = 3000 (the default) must be at least twice health.database_interval_ms (2 × 2000): a healthy database answers once per interval"),
        HealthErrorCase("[[health]]\nhandover = true\n", line: 1,
                        "health must be a table, not an array ([[health]] declares an array of tables; write [health])"),
        // [[checks]]: keys, name, kind
        HealthErrorCase(tcp("timout_ms = 5\n"), line: 6, "unknown key checks[0].timout_ms; did you mean checks[0].timeout_ms?"),
        HealthErrorCase(tcp("host = \"x\"\n"), line: 6, "unknown key checks[0].host; did you mean checks[0].port?"),
        HealthErrorCase(tcp("colour = \"x\"\n"), line: 6,
                        "unknown key checks[0].colour; known keys are name, kind, url, expect_status, address, port, file, command, interval_ms, timeout_ms, failures"),
        HealthErrorCase("[checks]\nname = \"x\"\n", line: 1,
                        "checks must be an array of tables ([[checks]]), not a table ([checks] declares one table; write [[checks]] for each entry)"),
        HealthErrorCase("[[checks]]\nkind = \"tcp\"\naddress = \"198.18.0.1\"\nport = 1\n", line: 1,
                        "checks[0].name is required: a short name for the check, e.g. \"repository\""),
        HealthErrorCase("[[checks]]\nname = \"\"\nkind = \"tcp\"\n", line: 2, "checks[0].name must not be empty"),
        HealthErrorCase("[[checks]]\nname = \"my check\"\nkind = \"tcp\"\n", line: 2,
                        "checks[0].name = \"my check\" is not a valid check name \(validName)"),
        HealthErrorCase("[[checks]]\nname = \"web/1\"\nkind = \"tcp\"\n", line: 2,
                        "checks[0].name = \"web/1\" is not a valid check name \(validName)"),
        HealthErrorCase("[[checks]]\nname = \"dépôt\"\nkind = \"tcp\"\n", line: 2,
                        "checks[0].name = \"dépôt\" is not a valid check name \(validName)"),
        HealthErrorCase("[[checks]]\nname = \"\(String(repeating: "c", count: 65))\"\nkind = \"tcp\"\n", line: 2,
                        "checks[0].name = \"\(String(repeating: "c", count: 65))\" is not a valid check name \(validName)"),
        HealthErrorCase("[[checks]]\nname = 5\n", line: 2, "checks[0].name must be a string, not an integer"),
        HealthErrorCase(tcp("") + "\n" + tcp(""), line: 8, "checks[1].name = \"db\" is already the name of checks[0]"),
        HealthErrorCase(tcp("") + "\n" + http("http://198.18.0.1/") + "\n" + tcp(""), line: 13,
                        "checks[2].name = \"db\" is already the name of checks[0]"),
        HealthErrorCase("[[checks]]\nname = \"database\"\nkind = \"tcp\"\naddress = \"198.18.0.1\"\nport = 5432\n", line: 2,
                        "checks[0].name = \"database\" is reserved for the database; choose another"),
        HealthErrorCase("[database]\n\n[[checks]]\nname = \"database\"\nkind = \"tcp\"\naddress = \"198.18.0.1\"\nport = 5432\n", line: 4,
                        "checks[0].name = \"database\" is reserved for the database; choose another"),
        HealthErrorCase("[units]\nstart = [\"isc-dhcp-server.service\", \"apache2.service\"]\n\n"
                            + "[[checks]]\nname = \"apache2.service\"\nkind = \"tcp\"\naddress = \"198.18.0.1\"\nport = 80\n", line: 5,
                        "checks[0].name = \"apache2.service\" is the name of a unit in [units] start; choose another"),
        HealthErrorCase("[[checks]]\nname = \"web\"\nurl = \"http://198.18.0.1/\"\n", line: 1,
                        "checks[0].kind is required: one of http, tcp, tftp, command"),
        HealthErrorCase("[[checks]]\nname = \"web\"\nkind = \"htp\"\nurl = \"http://198.18.0.1/\"\n", line: 3,
                        "checks[0].kind = \"htp\" is not one of http, tcp, tftp, command; did you mean \"http\"?"),
        HealthErrorCase("[[checks]]\nname = \"web\"\nkind = \"comand\"\n", line: 3,
                        "checks[0].kind = \"comand\" is not one of http, tcp, tftp, command; did you mean \"command\"?"),
        HealthErrorCase("[[checks]]\nname = \"web\"\nkind = \"icmp-echo-request\"\n", line: 3,
                        "checks[0].kind = \"icmp-echo-request\" is not one of http, tcp, tftp, command"),
        // Keys of another kind.
        HealthErrorCase(http("http://198.18.0.1/") + "file = \"index.txt\"\n", line: 5,
                        "checks[0].file does not apply to a check of kind \"http\""),
        HealthErrorCase(http("http://198.18.0.1/") + "port = 8080\n", line: 5,
                        "checks[0].port does not apply to a check of kind \"http\""),
        HealthErrorCase(tcp("url = \"http://198.18.0.1/\"\n"), line: 6, "checks[0].url does not apply to a check of kind \"tcp\""),
        HealthErrorCase(tcp("file = \"x\"\n"), line: 6, "checks[0].file does not apply to a check of kind \"tcp\""),
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = [\"/bin/true\"]\naddress = \"198.18.0.1\"\n", line: 5,
                        "checks[0].address does not apply to a check of kind \"command\""),
        HealthErrorCase("[[checks]]\nname = \"t\"\nkind = \"tftp\"\naddress = \"198.18.0.1\"\nfile = \"x\"\nexpect_status = 200\n", line: 6,
                        "checks[0].expect_status does not apply to a check of kind \"tftp\""),
        // http
        HealthErrorCase("[[checks]]\nname = \"web\"\nkind = \"http\"\n", line: 1,
                        "checks[0].url is required for an http check, e.g. \"http://198.18.0.100/index.txt\""),
        HealthErrorCase(http("http://repo.example.com/index.txt"), line: 4,
                        "checks[0].url = \"http://repo.example.com/index.txt\" \(badURL)"),
        HealthErrorCase(http("https://198.18.0.100/index.txt"), line: 4, "checks[0].url = \"https://198.18.0.100/index.txt\" \(badURL)"),
        HealthErrorCase(http("198.18.0.100/index.txt"), line: 4, "checks[0].url = \"198.18.0.100/index.txt\" \(badURL)"),
        HealthErrorCase(http("http://198.18.0.100:0/"), line: 4, "checks[0].url = \"http://198.18.0.100:0/\" \(badURL)"),
        HealthErrorCase(http("http://198.18.0.100:65536/"), line: 4, "checks[0].url = \"http://198.18.0.100:65536/\" \(badURL)"),
        HealthErrorCase(http("http://198.18.0.100:http/"), line: 4, "checks[0].url = \"http://198.18.0.100:http/\" \(badURL)"),
        HealthErrorCase(http("http://198.18.0.100/index page.txt"), line: 4,
                        "checks[0].url = \"http://198.18.0.100/index page.txt\" \(badURL)"),
        HealthErrorCase(http("http://fd00::1/"), line: 4, "checks[0].url = \"http://fd00::1/\" \(badURL)"),
        HealthErrorCase(http("http://[198.18.0.1]/"), line: 4, "checks[0].url = \"http://[198.18.0.1]/\" \(badURL)"),
        HealthErrorCase(http("http://198.18.0.1/") + "expect_status = 600\n", line: 5,
                        "checks[0].expect_status = 600 must be between 100 and 599"),
        HealthErrorCase(http("http://198.18.0.1/") + "expect_status = 99\n", line: 5,
                        "checks[0].expect_status = 99 must be between 100 and 599"),
        HealthErrorCase("[[checks]]\nname = \"web\"\nkind = \"http\"\nurl = \"\"\n", line: 4, "checks[0].url must not be empty"),
        // tcp, tftp
        HealthErrorCase("[[checks]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"198.18.0.1\"\n", line: 1,
                        "checks[0].port is required for a tcp check"),
        HealthErrorCase("[[checks]]\nname = \"db\"\nkind = \"tcp\"\nport = 5432\n", line: 1,
                        "checks[0].address is required for a tcp check"),
        HealthErrorCase("[[checks]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"db.example.com\"\nport = 5432\n", line: 4,
                        "checks[0].address = \"db.example.com\" is not a valid IP address"),
        HealthErrorCase("[[checks]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"0.0.0.0\"\nport = 5432\n", line: 4,
                        "checks[0].address = \"0.0.0.0\" is the unspecified address; give the address to probe"),
        HealthErrorCase("[[checks]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"198.18.0.1\"\nport = 0\n", line: 5,
                        "checks[0].port = 0 must be between 1 and 65535"),
        HealthErrorCase("[[checks]]\nname = \"t\"\nkind = \"tftp\"\naddress = \"198.18.0.1\"\n", line: 1,
                        "checks[0].file is required for a tftp check: a file the server offers, e.g. \"pxelinux.0\""),
        HealthErrorCase("[[checks]]\nname = \"t\"\nkind = \"tftp\"\nfile = \"pxelinux.0\"\n", line: 1,
                        "checks[0].address is required for a tftp check"),
        HealthErrorCase("[[checks]]\nname = \"t\"\nkind = \"tftp\"\naddress = \"198.18.0.1\"\nfile = \"a\\tb\"\n", line: 5,
                        "checks[0].file must be at most 255 printable characters"),
        HealthErrorCase("[[checks]]\nname = \"t\"\nkind = \"tftp\"\naddress = \"198.18.0.1\"\nfile = \"\(String(repeating: "f", count: 256))\"\n",
                        line: 5, "checks[0].file must be at most 255 printable characters"),
        HealthErrorCase("[[checks]]\nname = \"t\"\nkind = \"tftp\"\naddress = \"198.18.0.1\"\nport = 70000\nfile = \"x\"\n", line: 5,
                        "checks[0].port = 70000 must be between 1 and 65535"),
        // command
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\n", line: 1,
                        "checks[0].command is required for a command check: the program (absolute path) and its arguments"),
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = []\n", line: 4,
                        "checks[0].command is required for a command check: the program (absolute path) and its arguments"),
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = [\"check-repo\", \"-q\"]\n", line: 4,
                        "checks[0].command[0] = \"check-repo\" must be an absolute path"),
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = [\"./check-repo\"]\n", line: 4,
                        "checks[0].command[0] = \"./check-repo\" must be an absolute path"),
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = [\"\"]\n", line: 4,
                        "checks[0].command[0] = \"\" must be an absolute path"),
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = \"/bin/true\"\n", line: 4,
                        "checks[0].command must be an array of strings, not a string"),
        HealthErrorCase("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = [\"/bin/sleep\", 1]\n", line: 4,
                        "checks[0].command[1] must be a string, not an integer"),
        // interval_ms, timeout_ms, failures
        HealthErrorCase(tcp("interval_ms = 99\n"), line: 6, "checks[0].interval_ms = 99 must be between 100 and 3600000 milliseconds"),
        HealthErrorCase(tcp("interval_ms = 3600001\n"), line: 6,
                        "checks[0].interval_ms = 3600001 must be between 100 and 3600000 milliseconds"),
        HealthErrorCase(tcp("timeout_ms = 9\n"), line: 6, "checks[0].timeout_ms = 9 must be between 10 and 600000 milliseconds"),
        HealthErrorCase(tcp("timeout_ms = 600001\n"), line: 6, "checks[0].timeout_ms = 600001 must be between 10 and 600000 milliseconds"),
        HealthErrorCase(tcp("failures = 0\n"), line: 6, "checks[0].failures = 0 must be between 1 and 100"),
        HealthErrorCase(tcp("failures = 101\n"), line: 6, "checks[0].failures = 101 must be between 1 and 100"),
        HealthErrorCase(tcp("failures = true\n"), line: 6, "checks[0].failures must be an integer, not a boolean"),
        // [units] start: names travel in heartbeats.
        HealthErrorCase("[units]\nstart = [\"apache2.service\", \"\(longUnit)\"]\n", line: 2,
                        "units.start[1] = \"\(longUnit)\" is too long: kusu-ha watches units of at most 64 characters"),
    ]

    @Test(arguments: cases)
    func refused(_ errorCase: HealthErrorCase) throws {
        let error = try #require(parseError(HealthSnippet.text(errorCase.snippet)))
        #expect(error.message == errorCase.message)
        #expect(error.line == errorCase.line.map(HealthSnippet.line))
        #expect(error.file == "kusu-ha.toml")
    }

    /// A NUL byte that reaches a command argument through a TOML escape (the file itself has
    /// none) must be refused, not passed on (or cut short) to the probe.
    @Test func nulInACommandArgumentIsRefused() throws {
        let text = HealthSnippet.text("[[checks]]\nname = \"c\"\nkind = \"command\"\ncommand = [\"/bin/echo\", \"a\\u0000b\"]\n")
        #expect(!text.utf8.contains(0))
        do {
            let config = try Configuration.parse(text, file: "kusu-ha.toml", hostName: "installer")
            Issue.record("accepted: checks[0].kind = \(config.checks.map(\.kind))")
        } catch {
            #expect(error.line == HealthSnippet.line(4))
            // Either TOML refuses the escape or the check refuses the argument.
            #expect(error.message == "a string holds an escaped NUL character (\\u0000), which is not allowed")
        }
    }

    // MARK: - HTTPTarget

    @Test(arguments: [
        // (url, address, port, path, description)
        ("http://198.18.0.100", "198.18.0.100", 80, "/", "http://198.18.0.100/"),
        ("http://198.18.0.100/", "198.18.0.100", 80, "/", "http://198.18.0.100/"),
        ("http://198.18.0.100:80/index.txt", "198.18.0.100", 80, "/index.txt", "http://198.18.0.100/index.txt"),
        ("http://198.18.0.100:8080", "198.18.0.100", 8080, "/", "http://198.18.0.100:8080/"),
        ("http://198.18.0.100:0080/a", "198.18.0.100", 80, "/a", "http://198.18.0.100/a"),
        ("http://198.18.0.100:65535/a?b=c&d", "198.18.0.100", 65535, "/a?b=c&d", "http://198.18.0.100:65535/a?b=c&d"),
        ("http://[fd00::100]", "fd00::100", 80, "/", "http://[fd00::100]/"),
        ("http://[fd00::100]:8443/health", "fd00::100", 8443, "/health", "http://[fd00::100]:8443/health"),
        ("http://[FD00:0:0:0:0:0:0:100]:80/x", "fd00::100", 80, "/x", "http://[fd00::100]/x"),
        ("http://[::1]/", "::1", 80, "/", "http://[::1]/"),
        ("http://[::ffff:198.18.0.1]/", "::ffff:198.18.0.1", 80, "/", "http://[::ffff:198.18.0.1]/"),
        ("http://198.18.0.100//double/slash/", "198.18.0.100", 80, "//double/slash/", "http://198.18.0.100//double/slash/"),
    ])
    func httpTargets(url: String, address: String, port: Int, path: String, description: String) throws {
        let target = try #require(HTTPTarget(url: url))
        #expect(target == HTTPTarget(address: ip(address), port: UInt16(port), path: path))
        #expect(target.description == description)
        // The normalised form parses to the same target.
        #expect(HTTPTarget(url: target.description) == target)
    }

    @Test(arguments: [
        "", "http://", "http:///index.txt", "https://198.18.0.100/", "HTTP//198.18.0.100/", "ftp://198.18.0.100/",
        "198.18.0.100", "//198.18.0.100/", "http://repo/", "http://repo.example.com/", "http://198.18.0.256/",
        "http://198.18.0.100:/", "http://198.18.0.100:0/", "http://198.18.0.100:65536/", "http://198.18.0.100:-1/",
        "http://198.18.0.100:80:80/", "http://198.18.0.100:8o/", "http://user@198.18.0.100/",
        "http://fd00::100/", "http://[fd00::100/", "http://[fd00::100]8080/", "http://[fd00::100]:/",
        "http://[198.18.0.100]/", "http://[fe80::1%25eth0]/", "http://[]/", "http://0x7f.0.0.1/",
        "http://198.18.0.100/a b", "http://198.18.0.100/a\tb", "http://198.18.0.100/a\u{7F}", "http://198.18.0.100/a\nb",
        "http://198.18.0.100/#top", "http://198.18.0.100/a#b",
    ])
    func notHTTPTargets(url: String) {
        #expect(HTTPTarget(url: url) == nil)
    }

    /// A port is digits only (RFC 3986 `port = *DIGIT`).
    @Test(arguments: ["http://198.18.0.100:+8080/", "http://[fd00::1]:+80/"])
    func signedPortsAreRefused(url: String) {
        #expect(HTTPTarget(url: url) == nil, "\(String(describing: HTTPTarget(url: url)))")
    }

    /// The request line carries the path as written: it must be ASCII (RFC 3986; non-ASCII is percent-encoded).
    @Test func nonASCIIPathsAreRefused() {
        #expect(HTTPTarget(url: "http://198.18.0.100/dépôt/index.txt") == nil)
    }

    @Test func httpTargetDefaults() {
        let target = HTTPTarget(address: ip("198.18.0.1"))
        #expect(target.port == 80)
        #expect(target.path == "/")
        #expect(target.description == "http://198.18.0.1/")
    }

    // MARK: - HealthCheck.Kind

    @Test(arguments: [
        (HealthCheck.Kind.http(HTTPTarget(address: ip("198.18.0.100"), port: 80, path: "/index.txt"), expectStatus: 200),
         "http", "http://198.18.0.100/index.txt"),
        (.http(HTTPTarget(address: ip("fd00::100"), port: 8080, path: "/"), expectStatus: 204), "http", "http://[fd00::100]:8080/"),
        (.tcp(ip("198.18.0.100"), port: 5432), "tcp", "198.18.0.100:5432"),
        (.tcp(ip("fd00::100"), port: 22), "tcp", "[fd00::100]:22"),
        (.tftp(ip("198.18.0.100"), port: 69, file: "pxelinux.0"), "tftp", "tftp://198.18.0.100/pxelinux.0"),
        (.tftp(ip("198.18.0.100"), port: 1069, file: "boot/x.efi"), "tftp", "tftp://198.18.0.100:1069/boot/x.efi"),
        (.tftp(ip("fd00::100"), port: 69, file: "pxelinux.0"), "tftp", "tftp://[fd00::100]/pxelinux.0"),
        (.tftp(ip("fd00::100"), port: 6969, file: "a"), "tftp", "tftp://[fd00::100]:6969/a"),
        (.command(["/usr/lib/kusu/check"]), "command", "/usr/lib/kusu/check"),
        (.command(["/usr/lib/kusu/check", "--quiet", "repo"]), "command", "/usr/lib/kusu/check --quiet repo"),
    ])
    func kindNamesAndTargets(kind: HealthCheck.Kind, name: String, target: String) {
        #expect(kind.name == name)
        #expect(kind.target == target)
    }

    @Test func healthCheckDefaults() {
        let check = HealthCheck(name: "x", kind: .tcp(ip("198.18.0.1"), port: 1))
        #expect(check.interval == .seconds(2))
        #expect(check.timeout == .seconds(1))
        #expect(check.failures == 3)
    }

    // MARK: - ResourceName

    @Test(arguments: [
        ("a", true), ("nginx.service", true), ("postgresql@15-main.service", true), ("dev-disk-by\\x2duuid.device", true),
        ("A:b_c-d.e@f", true), (String(repeating: "r", count: 64), true), (String(repeating: "r", count: 65), false),
        ("", false), ("a b", false), ("a/b", false), ("a\u{1}", false), ("é", false), ("a\"b", false), ("a,b", false),
    ])
    func resourceNames(name: String, valid: Bool) {
        #expect(ResourceName.isValid(name) == valid)
    }
}
