import ClusterCore
import Testing

/// One refused variation of the contract's example: lines replaced (keeping the numbering),
/// text appended, and the exact error expected.
struct ErrorCase: CustomTestStringConvertible, Sendable {
    var edits: [Int: String]
    var append = ""
    var hostName = "installer"
    var line: Int?
    var message: String

    init(_ edits: [Int: String], append: String = "", hostName: String = "installer", line: Int?, _ message: String) {
        self.edits = edits
        self.append = append
        self.hostName = hostName
        self.line = line
        self.message = message
    }

    var text: String {
        var lines = exampleConfig.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (number, replacement) in edits { lines[number - 1] = replacement }
        return lines.joined(separator: "\n") + append
    }

    var testDescription: String { message }
}

func parseError(_ text: String, hostName: String = "installer") -> ConfigError? {
    do {
        _ = try Configuration.parse(text, file: "kusu-ha.toml", hostName: hostName)
        return nil
    } catch {
        return error
    }
}

@Suite struct ConfigErrorTests {
    static let cases: [ErrorCase] = [
        // [cluster] values
        ErrorCase([8: "dead_ms = 300"], line: 8,
                  "cluster.dead_ms = 300 must be greater than twice cluster.interval_ms (2 × 200 = 400)"),
        ErrorCase([8: "# no dead_ms", 6: "interval_ms = 600"], line: 6,
                  "cluster.dead_ms = 1000 (the default) must be greater than twice cluster.interval_ms (2 × 600 = 1200)"),
        ErrorCase([7: "warn_ms = 100"], line: 7, "cluster.warn_ms = 100 must be at least cluster.interval_ms (200)"),
        ErrorCase([7: "warn_ms = 1000"], line: 7, "cluster.warn_ms = 1000 must be less than cluster.dead_ms (1000)"),
        ErrorCase([7: "# no warn_ms", 8: "dead_ms = 500"], line: 8,
                  "cluster.warn_ms = 600 (the default) must be less than cluster.dead_ms (500)"),
        ErrorCase([6: "interval_ms = 5"], line: 6, "cluster.interval_ms = 5 must be between 10 and 60000 milliseconds"),
        ErrorCase([6: "interval_ms = 60001"], line: 6,
                  "cluster.interval_ms = 60001 must be between 10 and 60000 milliseconds"),
        ErrorCase([8: "dead_ms = 0"], line: 8, "cluster.dead_ms = 0 must be at least 1"),
        ErrorCase([5: "port = 0"], line: 5, "cluster.port = 0 must be between 1 and 65535"),
        ErrorCase([5: "port = 65536"], line: 5, "cluster.port = 65536 must be between 1 and 65535"),
        ErrorCase([5: "port = \"694\""], line: 5, "cluster.port must be an integer, not a string"),
        ErrorCase([5: "port = 694.0"], line: 5, "cluster.port must be an integer, not a floating-point number"),
        ErrorCase([9: "auto_failover = \"yes\""], line: 9, "cluster.auto_failover must be true or false, not a string"),
        ErrorCase([11: "tie_breakers = \"198.18.0.1\""], line: 11,
                  "cluster.tie_breakers must be an array of strings, not a string"),
        ErrorCase([11: "tie_breakers = [\"198.18.0.1\", 5]"], line: 11,
                  "cluster.tie_breakers[1] must be a string, not an integer"),
        ErrorCase([11: "tie_breakers = [\"198.18.0.256\"]"], line: 11,
                  "cluster.tie_breakers[0] = \"198.18.0.256\" is not a valid IP address"),
        ErrorCase([11: "tie_breaker_interval_ms = 50"], line: 11,
                  "cluster.tie_breaker_interval_ms = 50 must be between 100 and 10000 milliseconds"),
        ErrorCase([11: "service_loss_handover = 1"], line: 11,
                  "cluster.service_loss_handover must be true or false, not an integer"),
        ErrorCase([2: "name = \"\""], line: 2, "cluster.name must not be empty"),
        ErrorCase([2: "name = \"\(String(repeating: "k", count: 65))\""], line: 2,
                  "cluster.name = \"\(String(repeating: "k", count: 65))\" is too long: at most 64 bytes"),
        ErrorCase([4: "auth_key_file = \"authkey\""], line: 4,
                  "cluster.auth_key_file = \"authkey\" must be an absolute path (starting with '/')"),
        // unknown keys and sections
        ErrorCase([6: "inteval_ms = 200"], line: 6, "unknown key cluster.inteval_ms; did you mean cluster.interval_ms?"),
        ErrorCase([10: "colour = \"blue\""], line: 10,
                  "unknown key cluster.colour; known keys are name, node, auth_key_file, port, interval_ms, warn_ms, dead_ms, auto_failover, auto_failback, tie_breakers, tie_breaker_interval_ms, service_loss_handover"),
        ErrorCase([1: "[clustr]"], line: 1, "unknown section [clustr]; did you mean [cluster]?"),
        ErrorCase([23: "[[adresses]]"], line: 23, "unknown section [[adresses]]; did you mean [addresses]?"),
        ErrorCase([40: "[fence]"], line: 40, "unknown section [fence]; did you mean [fencing]?"),
        ErrorCase([12: "[cluster.extra]"], line: 12, "unknown key cluster.extra; known keys are name, node, auth_key_file, port, interval_ms, warn_ms, dead_ms, auto_failover, auto_failback, tie_breakers, tie_breaker_interval_ms, service_loss_handover"),
        ErrorCase([20: "priorty = 50"], line: 20, "unknown key nodes[1].priorty; did you mean nodes[1].priority?"),
        ErrorCase([26: "arp_cnt = 5"], line: 26, "unknown key addresses[0].arp_cnt; did you mean addresses[0].arp_count?"),
        ErrorCase([1: "[[cluster]]"], line: 1,
                  "cluster must be a table, not an array ([[cluster]] declares an array of tables; write [cluster])"),
        ErrorCase([13: "[nodes]", 18: "[other]"], line: 18, "unknown section [other]"),
        // [[nodes]]
        ErrorCase([15: "priority = 2000"], line: 15, "nodes[0].priority = 2000 must be between 0 and 1000"),
        // A node's name is its database application_name: printable ASCII, no control character.
        ErrorCase([19: "name = \"fail over\""], line: 19,
                  "nodes[1].name = \"fail over\" contains a space: a node name is printable ASCII without spaces (it is the database's application_name)"),
        ErrorCase([19: "name = \"failöver\""], line: 19,
                  "nodes[1].name = \"failöver\" contains \"ö\": a node name is printable ASCII without spaces (it is the database's application_name)"),
        ErrorCase([19: "name = \"fail\\u0007over\""], line: 19,
                  "nodes[1].name contains the control character U+0007: not allowed in a name"),
        ErrorCase([2: "name = \"ku\\u001bsu\""], line: 2, "cluster.name contains the control character U+001B: not allowed in a name"),
        ErrorCase([19: "name = \"\(String(repeating: "f", count: 64))\""], line: 19,
                  "nodes[1].name = \"\(String(repeating: "f", count: 64))\" is too long for a node: at most 63 bytes (it is the database's application_name)"),
        ErrorCase([41: "command = [\"fence_ipmilan\", \"--ip\", \"bmc\"]"], line: 41,
                  "fencing.command[0] = \"fence_ipmilan\" must be an absolute path (starting with '/'): the program is not looked up in PATH"),
        ErrorCase([15: "priority = -1"], line: 15, "nodes[0].priority = -1 must be between 0 and 1000"),
        ErrorCase([19: "name = \"installer\""], line: 19,
                  "nodes[1].name = \"installer\" is the same as nodes[0].name; the two nodes need different names"),
        ErrorCase([19: "# no name"], line: 18, "nodes[1].name is required"),
        ErrorCase([19: "name = \"\""], line: 19, "nodes[1].name must not be empty"),
        ErrorCase([21: "# no addresses"], line: 18, "nodes[1].addresses is required: one address per heartbeat link"),
        ErrorCase([21: "addresses = [\"198.18.0.12\"]"], line: 21,
                  "nodes[1].addresses lists 1 address but nodes[0].addresses lists 2 addresses; both nodes need one address per heartbeat link"),
        ErrorCase([21: "addresses = [\"fd00::12\", \"198.18.4.12\"]"], line: 21,
                  "nodes[1].addresses[0] = \"fd00::12\" is IPv6 but nodes[0].addresses[0] = \"198.18.0.11\" is IPv4; link 0 must use the same address family on both nodes"),
        ErrorCase([21: "addresses = [\"198.18.0.11\", \"198.18.4.12\"]"], line: 21,
                  "nodes[1].addresses[0] = \"198.18.0.11\" is already used by nodes[0].addresses[0]"),
        ErrorCase([16: "addresses = [\"198.18.0.11\", \"198.18.0.11\"]"], line: 16,
                  "nodes[0].addresses[1] = \"198.18.0.11\" is already used by nodes[0].addresses[0]"),
        ErrorCase([16: "addresses = [\"198.18.0.1x\", \"198.18.4.11\"]"], line: 16,
                  "nodes[0].addresses[0] = \"198.18.0.1x\" is not a valid IP address"),
        ErrorCase([16: "addresses = []"], line: 16,
                  "nodes[0].addresses must list at least one address (one per heartbeat link)"),
        ErrorCase([16: "addresses = [\"0.0.0.0\", \"198.18.4.11\"]"], line: 16,
                  "nodes[0].addresses[0] = \"0.0.0.0\" is the unspecified address; give the node's address on that link"),
        ErrorCase([16: "addresses = [" + (1...9).map { "\"10.0.0.\($0)\"" }.joined(separator: ", ") + "]"], line: 16,
                  "nodes[0].addresses lists 9 addresses; at most 8 heartbeat links are supported"),
        ErrorCase([:], append: "\n[[nodes]]\nname = \"third\"\naddresses = [\"1.1.1.1\", \"1.1.1.2\"]\n", line: 42,
                  "3 [[nodes]] are configured: exactly two are required, this node and its peer"),
        ErrorCase([18: "[[other]]"], line: 18, "unknown section [[other]]"),
        ErrorCase([3: "node = \"nobody\""], line: 3,
                  "this node 'nobody' (cluster.node) is not listed in [[nodes]] (installer, failover)"),
        ErrorCase([3: "# no node"], hostName: "elsewhere", line: nil,
                  "this node 'elsewhere' (the host name; set cluster.node to choose another) is not listed in [[nodes]] (installer, failover)"),
        // [[addresses]]
        ErrorCase([24: "address = \"198.18.0.100\""], line: 24,
                  "addresses[0].address = \"198.18.0.100\" needs a prefix length, e.g. \"198.18.0.100/24\""),
        ErrorCase([24: "address = \"198.18.0.100/33\""], line: 24,
                  "addresses[0].address = \"198.18.0.100/33\": the prefix length must be between 0 and 32 for an IPv4 address"),
        ErrorCase([24: "address = \"fd00::100/129\""], line: 24,
                  "addresses[0].address = \"fd00::100/129\": the prefix length must be between 0 and 128 for an IPv6 address"),
        ErrorCase([24: "address = \"198.18.0.100/\""], line: 24,
                  "addresses[0].address = \"198.18.0.100/\": the prefix length must be between 0 and 32 for an IPv4 address"),
        ErrorCase([24: "address = \"198.18.0.300/24\""], line: 24,
                  "addresses[0].address = \"198.18.0.300/24\": '198.18.0.300' is not a valid IP address"),
        ErrorCase([24: "address = \"vip\""], line: 24,
                  "addresses[0].address = \"vip\" is not an address with a prefix length, e.g. \"198.18.0.100/24\""),
        ErrorCase([24: "# no address"], line: 23, "addresses[0].address is required, e.g. \"198.18.0.100/24\""),
        ErrorCase([25: "interface = \"eth0:1\""], line: 25,
                  "addresses[0].interface = \"eth0:1\" is not a valid interface name (1 to 15 characters, no '/', ':' or whitespace)"),
        ErrorCase([25: "interface = \"a-very-long-name0\""], line: 25,
                  "addresses[0].interface = \"a-very-long-name0\" is not a valid interface name (1 to 15 characters, no '/', ':' or whitespace)"),
        ErrorCase([25: "interface = \"\""], line: 25, "addresses[0].interface must not be empty"),
        ErrorCase([25: "# no interface"], line: 23,
                  "addresses[0].interface is required: the network interface that holds the address"),
        ErrorCase([26: "arp_count = 101"], line: 26, "addresses[0].arp_count = 101 must be between 0 and 100"),
        ErrorCase([27: "arp_interval_ms = 0"], line: 27,
                  "addresses[0].arp_interval_ms = 0 must be between 1 and 10000 milliseconds"),
        ErrorCase([:], append: "\n[[addresses]]\naddress = \"198.18.0.100/16\"\ninterface = \"eth1\"\n", line: 43,
                  "addresses[1].address = \"198.18.0.100/16\" is already listed as addresses[0]"),
        // [database], [units], [fencing]
        ErrorCase([30: "unit = \"postgresql\""], line: 30,
                  "database.unit = \"postgresql\" is not a valid systemd unit name (like \"apache2.service\"; known suffixes: .service, .socket, .target, .mount, .automount, .swap, .path, .timer, .slice, .scope, .device)"),
        ErrorCase([31: "socket_directory = \"run/postgresql\""], line: 31,
                  "database.socket_directory = \"run/postgresql\" must be an absolute path (starting with '/')"),
        ErrorCase([32: "port = 70000"], line: 32, "database.port = 70000 must be between 1 and 65535"),
        ErrorCase([34: "user = \"\""], line: 34, "database.user must not be empty"),
        ErrorCase([35: "max_lag_bytes = -1"], line: 35, "database.max_lag_bytes = -1 must be at least 0"),
        ErrorCase([36: "lag = 1"], line: 36, "unknown key database.lag; known keys are unit, socket_directory, port, data_directory, user, max_lag_bytes, synchronous"),
        ErrorCase([38: "start = [\"apache2.service\", \"foo@.service\"]"], line: 38,
                  "units.start[1] = \"foo@.service\" is not a valid systemd unit name (like \"apache2.service\"; known suffixes: .service, .socket, .target, .mount, .automount, .swap, .path, .timer, .slice, .scope, .device)"),
        ErrorCase([38: "start = [\"apache2.service\", \"apache2.service\"]"], line: 38,
                  "units.start[1] = \"apache2.service\" is already listed as units.start[0]"),
        ErrorCase([38: "stop = []"], line: 38, "unknown key units.stop; known keys are start"),
        ErrorCase([41: "command = []"], line: 41,
                  "fencing.command must not be empty: give the program and its arguments"),
        ErrorCase([41: "command = [\"\", \"x\"]"], line: 41, "fencing.command[0] must name the program to run, not be empty"),
        ErrorCase([41: "# no command"], line: 40, "fencing.command is required when [fencing] is present"),
        ErrorCase([41: "command = \"/usr/sbin/fence_ipmilan --ip bmc\""], line: 41,
                  "fencing.command must be an array of strings, not a string"),
        ErrorCase([36: "synchronous = \"always\""], line: 36,
                  "database.synchronous = \"always\" is not one of \"degradable\", \"strict\", \"off\""),
        ErrorCase([:], append: "\n[[sync]]\npull = true\n", line: 42, "sync[0].path is required: the directory to keep on the standby"),
        ErrorCase([:], append: "\n[[sync]]\npath = \"srv/kusu\"\n", line: 43,
                  "sync[0].path = \"srv/kusu\" must be an absolute path (starting with '/')"),
        ErrorCase([:], append: "\n[[sync]]\npath = \"/srv/../etc\"\n", line: 43,
                  "sync[0].path = \"/srv/../etc\" must name a directory below / without '.' or '..'"),
        ErrorCase([:], append: "\n[[sync]]\npath = \"/\"\n", line: 43,
                  "sync[0].path = \"/\" must name a directory below / without '.' or '..'"),
        ErrorCase([:], append: "\n[[sync]]\npath = \"/srv/a\"\ninterval_s = 0\n", line: 44,
                  "sync[0].interval_s = 0 must be between 1 and 86400 seconds"),
        ErrorCase([:], append: "\n[[sync]]\npath = \"/srv/a\"\n[[sync]]\npath = \"/srv/a/\"\n", line: 45,
                  "sync[1].path = \"/srv/a\" is already listed as sync[0]"),
        ErrorCase([:], append: "\n[[sync]]\npath = \"/srv/a\"\npush = true\n", line: 44,
                  "unknown key sync[0].push; did you mean sync[0].path?"),
    ]

    @Test(arguments: cases)
    func refused(_ errorCase: ErrorCase) throws {
        let error = try #require(parseError(errorCase.text, hostName: errorCase.hostName))
        #expect(error.message == errorCase.message)
        #expect(error.line == errorCase.line)
        #expect(error.file == "kusu-ha.toml")
    }

    @Test func theBriefsExample() throws {
        let error = try #require(parseError(ErrorCase([8: "dead_ms = 300"], line: 8, "").text))
        #expect(error.description
            == "kusu-ha.toml:8: cluster.dead_ms = 300 must be greater than twice cluster.interval_ms (2 × 200 = 400)")
    }

    @Test func syntaxErrorsCarryTheLine() throws {
        let error = try #require(parseError(ErrorCase([5: "port = "], line: 5, "").text))
        #expect(error.line == 5)
        #expect(error.message.hasPrefix("TOML syntax error at column "))
        let duplicate = try #require(parseError(ErrorCase([10: "port = 695"], line: 10, "").text))
        #expect(duplicate.line == 10)
        #expect(duplicate.message.hasPrefix("TOML syntax error"))
    }

    @Test func strayKeyOutsideAnySection() throws {
        let error = try #require(parseError("debug = true\n" + minimalConfig))
        #expect(error.line == 1)
        #expect(error.message
            == "unknown key 'debug' outside any section; keys belong in a section ([cluster], [nodes], [addresses], [database], [units], [fencing], [sync], [health], [checks])")
    }

    @Test func nodeCountErrors() throws {
        let none = try #require(parseError("[cluster]\nname = \"x\"\n"))
        #expect(none.line == nil)
        #expect(none.message == "no [[nodes]] are configured: exactly two are required, this node and its peer")
        let one = try #require(parseError("# one\n[[nodes]]\nname = \"installer\"\naddresses = [\"1.2.3.4\"]\n"))
        #expect(one.line == 2)
        #expect(one.message == "1 [[nodes]] are configured: exactly two are required, this node and its peer")
        let table = try #require(parseError("[nodes]\nname = \"installer\"\n"))
        #expect(table.line == 1)
        #expect(table.message
            == "nodes must be an array of tables ([[nodes]]), not a table ([nodes] declares one table; write [[nodes]] for each entry)")
    }

    @Test func nulBytesAreRefused() throws {
        let error = try #require(parseError(minimalConfig + "\0"))
        #expect(error.message == "the file contains a NUL byte; it must be UTF-8 text")
    }

    @Test(arguments: [
        ("postgresql@15-main.service", true), ("apache2.service", true), ("dev-sda1.device", true),
        ("a.b.c.target", true), ("x-y_z:1.mount", true), ("apache2", false), ("apache2.servic", false),
        ("@x.service", false), ("a@b@c.service", false), (".service", false), ("a b.service", false),
        ("ä.service", false), ("foo@.service", false),
    ])
    func unitNames(name: String, valid: Bool) throws {
        let text = minimalConfig + "\n[units]\nstart = [\"\(name)\"]\n"
        #expect((parseError(text) == nil) == valid, "\(name)")
    }
}
