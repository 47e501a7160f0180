import ClusterCore
import Testing

/// The contract's example (ARCHITECTURE.md, Configuration), line for line.
let exampleConfig = """
    [cluster]
    name = "kusu"
    node = "installer"                 # this node; default: the host name
    auth_key_file = "/etc/kusu-ha/authkey"   # shared secret, readable by kusu-ha only
    port = 694                         # UDP
    interval_ms = 200                  # heartbeat period
    warn_ms = 600                      # peer becomes "late"
    dead_ms = 1000                     # peer becomes "dead" (every link silent)
    auto_failover = true
    auto_failback = false
    tie_breakers = ["198.18.0.1"]      # ping targets; [] = none

    [[nodes]]
    name = "installer"
    priority = 100
    addresses = ["198.18.0.11", "198.18.4.11"]   # one per heartbeat link

    [[nodes]]
    name = "failover"
    priority = 50
    addresses = ["198.18.0.12", "198.18.4.12"]

    [[addresses]]                      # floating IPs
    address = "198.18.0.100/24"
    interface = "eth0"
    arp_count = 5
    arp_interval_ms = 200

    [database]                         # the KUSU PostgreSQL
    unit = "postgresql@15-main.service"
    socket_directory = "/var/run/postgresql"
    port = 5432
    data_directory = "/var/lib/postgresql/15/main"
    user = "postgres"
    max_lag_bytes = 1048576            # automatic failover refused beyond this replay lag

    [units]
    start = ["isc-dhcp-server.service", "tftpd-hpa.service", "apache2.service"]

    [fencing]                          # optional
    command = ["/usr/sbin/fence_ipmilan", "--ip", "bmc-installer", "--action", "off"]
    """

let minimalConfig = """
    [[nodes]]
    name = "installer"
    addresses = ["198.18.0.11"]

    [[nodes]]
    name = "failover"
    addresses = ["198.18.0.12"]
    """

func ip(_ text: String) -> IPAddress { IPAddress(text)! }

@Suite struct ConfigParsingTests {
    @Test func parsesTheContractExample() throws {
        let config = try Configuration.parse(exampleConfig, file: "kusu-ha.toml", hostName: "ignored")
        let expected = Configuration(
            cluster: ClusterSettings(
                name: "kusu", node: "installer", authKeyFile: "/etc/kusu-ha/authkey", port: 694,
                interval: .milliseconds(200), warn: .milliseconds(600), dead: .milliseconds(1000),
                autoFailover: true, autoFailback: false, tieBreakers: [ip("198.18.0.1")]
            ),
            nodes: [
                NodeSettings(name: "installer", priority: 100, addresses: [ip("198.18.0.11"), ip("198.18.4.11")]),
                NodeSettings(name: "failover", priority: 50, addresses: [ip("198.18.0.12"), ip("198.18.4.12")]),
            ],
            addresses: [
                FloatingAddress(address: ip("198.18.0.100"), prefixLength: 24, interface: "eth0", arpCount: 5,
                                arpInterval: .milliseconds(200))
            ],
            database: DatabaseSettings(
                unit: "postgresql@15-main.service", socketDirectory: "/var/run/postgresql", port: 5432,
                dataDirectory: "/var/lib/postgresql/15/main", user: "postgres", maxLagBytes: 1_048_576
            ),
            units: ["isc-dhcp-server.service", "tftpd-hpa.service", "apache2.service"],
            fencingCommand: ["/usr/sbin/fence_ipmilan", "--ip", "bmc-installer", "--action", "off"]
        )
        #expect(config == expected)
        #expect(config.localNode.name == "installer")
        #expect(config.peerNode.name == "failover")
        #expect(config.linkCount == 2)
        #expect(config.addresses[0].description == "198.18.0.100/24")
    }

    @Test func tieBreakerCadenceAndServiceLossHandover() throws {
        let text = "[cluster]\ntie_breaker_interval_ms = 250\nservice_loss_handover = false\n\n" + minimalConfig
        let config = try Configuration.parse(text, file: "k.toml", hostName: "failover")
        #expect(config.cluster.tieBreakerInterval == .milliseconds(250))
        #expect(!config.cluster.serviceLossHandover)
    }

    @Test func defaultsForAMinimalFile() throws {
        let config = try Configuration.parse(minimalConfig, file: "k.toml", hostName: "failover")
        #expect(config.cluster == ClusterSettings(node: "failover"))
        #expect(config.cluster.name == "kusu")
        #expect(config.cluster.authKeyFile == "/etc/kusu-ha/authkey")
        #expect(config.cluster.port == 694)
        #expect(config.cluster.interval == .milliseconds(200))
        #expect(config.cluster.warn == .milliseconds(600))
        #expect(config.cluster.dead == .milliseconds(1000))
        #expect(config.cluster.autoFailover)
        #expect(!config.cluster.autoFailback)
        #expect(config.cluster.tieBreakers == [])
        #expect(config.cluster.tieBreakerInterval == .seconds(1))
        #expect(config.cluster.serviceLossHandover)
        #expect(config.nodes[0].priority == 0)
        #expect(config.addresses == [])
        #expect(config.database == nil)
        #expect(config.units == [])
        #expect(config.fencingCommand == nil)
        #expect(config.localNode.name == "failover")
        #expect(config.peerNode.name == "installer")
        #expect(config.linkCount == 1)
    }

    @Test func defaultsOfOptionalSections() throws {
        let text = minimalConfig + "\n[database]\n[units]\n[[addresses]]\naddress = \"fd00::100/64\"\ninterface = \"bond0.12\"\n"
        let config = try Configuration.parse(text, file: "k.toml", hostName: "installer")
        #expect(config.database == DatabaseSettings())
        #expect(config.database?.maxLagBytes == 1_048_576)
        #expect(config.database?.port == 5432)
        #expect(config.database?.unit == "postgresql@15-main.service")
        #expect(config.units == [])
        #expect(config.addresses == [
            FloatingAddress(address: ip("fd00::100"), prefixLength: 64, interface: "bond0.12", arpCount: 5,
                            arpInterval: .milliseconds(200))
        ])
    }

    @Test func synchronousModeAndSyncTrees() throws {
        let text = minimalConfig + """

            [database]
            synchronous = "strict"

            [[sync]]
            path = "/srv/kusu/repos/"
            interval_s = 5
            exclude = ["*.tmp"]

            [[sync]]
            path = "/tftpboot"
            pull = false
            delete = false
            """
        let config = try Configuration.parse(text, file: "k.toml", hostName: "installer")
        #expect(config.database?.synchronous == .strict)
        #expect(config.sync == [
            SyncTree(path: "/srv/kusu/repos", pull: true, interval: .seconds(5), exclude: ["*.tmp"], delete: true),
            SyncTree(path: "/tftpboot", pull: false, interval: .seconds(30), exclude: [], delete: false),
        ])
        let defaults = try Configuration.parse(minimalConfig + "\n[database]\n", file: "k.toml", hostName: "installer")
        #expect(defaults.database?.synchronous == .degradable)
        #expect(defaults.sync.isEmpty)
    }

    @Test func hostNameFallsBackToItsFirstLabel() throws {
        let config = try Configuration.parse(minimalConfig, file: "k.toml", hostName: "failover.example.com")
        #expect(config.cluster.node == "failover")
    }

    @Test func ipv6LinksAndDottedKeys() throws {
        let text = """
            cluster.port = 7000
            cluster.tie_breakers = ["2001:db8::1", "198.18.0.1"]
            [[nodes]]
            name = "a"
            addresses = ["fd00::1", "10.0.0.1"]
            [[nodes]]
            name = "b"
            addresses = ["fd00::2", "10.0.0.2"]
            """
        let config = try Configuration.parse(text, file: "k.toml", hostName: "b")
        #expect(config.cluster.port == 7000)
        #expect(config.cluster.tieBreakers == [ip("2001:db8::1"), ip("198.18.0.1")])
        #expect(config.peerNode.addresses == [ip("fd00::1"), ip("10.0.0.1")])
    }

    @Test func errorDescription() {
        #expect(ConfigError(file: "f.toml", line: 7, message: "bad").description == "f.toml:7: bad")
        #expect(ConfigError(file: "f.toml", line: nil, message: "bad").description == "f.toml: bad")
    }
}
