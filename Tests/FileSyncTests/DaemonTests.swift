import ClusterCore
import FileSync
import Testing

/// A pair as the test bed has it: installer (a) and failover (b), two heartbeat links each.
func pairConfiguration(node: String = "installer", sync: [SyncTree]) -> Configuration {
    Configuration(
        cluster: ClusterSettings(node: node),
        nodes: [
            NodeSettings(name: "installer", priority: 100, addresses: [IPAddress("198.18.4.11")!, IPAddress("198.18.8.11")!]),
            NodeSettings(name: "failover", priority: 50, addresses: [IPAddress("198.18.4.12")!, IPAddress("198.18.8.12")!]),
        ],
        sync: sync)
}

@Suite struct SecretDerivation {
    @Test func stableAndDocumented() {
        // HMAC-SHA256(key, "kusu-ha rsync v1"), hex, first 32 characters. The value is pinned:
        // both nodes of a pair (and every later version) must derive the same password.
        let secret = SyncSecret(heartbeatKey: Array("0123456789abcdef0123456789abcdef".utf8))
        #expect(secret.password == "dc50d467045abe59d5d3f7fc15535539")
        #expect(secret.password.count == 32)
        #expect(secret.password.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(SyncSecret(heartbeatKey: Array("0123456789abcdef0123456789abcdef".utf8)) == secret)
    }

    @Test func dependsOnTheKey() {
        let one = SyncSecret(heartbeatKey: Array("0123456789abcdef0123456789abcdef".utf8))
        let other = SyncSecret(heartbeatKey: Array("fedcba9876543210fedcba9876543210".utf8))
        #expect(one != other)
    }

    @Test func fileTexts() {
        let secret = SyncSecret(heartbeatKey: Array(repeating: 7, count: 32))
        #expect(secret.secretsFileText == "kusu-sync:\(secret.password)\n")
        #expect(secret.passwordFileText == "\(secret.password)\n")
        #expect(!"\(secret)".contains(secret.password), "the description must not reveal the password")
    }
}

@Suite struct DaemonConfiguration {
    @Test func modulesForEachTree() {
        let config = pairConfiguration(sync: [
            SyncTree(path: "/srv/kusu/repos"),
            SyncTree(path: "/tftpboot", pull: false, exclude: ["*.tmp"]),
        ])
        let text = RsyncDaemonConfiguration(configuration: config, runtimeDirectory: "/run/kusu-ha-rsyncd").text
        #expect(text == """
            # rsyncd.conf written by "kusu-ha sync serve" from the [[sync]] entries of kusu-ha.toml.
            # Do not edit: it is written again at every start of kusu-ha-rsyncd.service.
            port = 873
            max connections = 4
            lock file = /run/kusu-ha-rsyncd/rsyncd.lock
            # Clients are matched by address only: no DNS lookups.
            reverse lookup = no
            forward lookup = no
            # No "log file": syslog, which journald files under kusu-ha-rsyncd.service.
            syslog tag = kusu-ha-rsyncd
            timeout = 300

            [kusu-0]
                comment = kusu-ha [[sync]] 0
                path = /srv/kusu/repos
                read only = yes
                write only = no
                list = no
                use chroot = yes
                numeric ids = yes
                # Read as root, so that every file is sent whatever its owner and mode.
                uid = root
                gid = root
                hosts allow = 198.18.4.12 198.18.8.12
                hosts deny = *
                auth users = kusu-sync:ro
                secrets file = /run/kusu-ha-rsyncd/rsyncd.secrets
                strict modes = yes
                auth digest = sha256

            [kusu-1]
                comment = kusu-ha [[sync]] 1
                path = /tftpboot
                read only = yes
                write only = no
                list = no
                use chroot = yes
                numeric ids = yes
                # Read as root, so that every file is sent whatever its owner and mode.
                uid = root
                gid = root
                hosts allow = 198.18.4.12 198.18.8.12
                hosts deny = *
                auth users = kusu-sync:ro
                secrets file = /run/kusu-ha-rsyncd/rsyncd.secrets
                strict modes = yes
                auth digest = sha256

            """)
    }

    @Test func onlyThePeerIsAllowed() {
        // Seen from the failover node, the installer's heartbeat addresses are the peer's.
        let config = pairConfiguration(node: "failover", sync: [SyncTree(path: "/depot")])
        let text = RsyncDaemonConfiguration(configuration: config, runtimeDirectory: "/r").text
        #expect(text.contains("    hosts allow = 198.18.4.11 198.18.8.11\n"))
        #expect(!text.contains("198.18.4.12"))
        #expect(!text.contains("\naddress"), "the daemon listens on every address; access is limited per module")
    }

    @Test func ipv6Peers() {
        let text = RsyncDaemonConfiguration(
            trees: [SyncTree(path: "/depot")], peerAddresses: [IPAddress("2001:db8::12")!, IPAddress("198.18.8.12")!],
            secretsFile: "/s", lockFile: "/l").text
        #expect(text.contains("    hosts allow = 2001:db8::12 198.18.8.12\n"))
    }

    @Test func noTreesNoModules() {
        let text = RsyncDaemonConfiguration(configuration: pairConfiguration(sync: []), runtimeDirectory: "/r").text
        #expect(!text.contains("\n["))
        #expect(text.contains("port = 873\n"))
    }

    @Test func awkwardPaths() {
        let text = RsyncDaemonConfiguration(
            trees: [SyncTree(path: "/srv/100%done"), SyncTree(path: "/srv/trailing ")], peerAddresses: [IPAddress("198.18.4.12")!],
            secretsFile: "/s", lockFile: "/l").text
        #expect(text.contains("    path = /srv/100%%done\n"), "rsyncd.conf expands %VAR%")
        #expect(text.contains("    path = /srv/trailing /\n"), "a trailing slash keeps the trailing space")
        #expect(RsyncDaemonConfiguration.unsupportedPath("/srv/a\nb") != nil)
        #expect(RsyncDaemonConfiguration.unsupportedPath("/srv/a\r\nb") != nil)
        #expect(RsyncDaemonConfiguration.unsupportedPath("/srv/a b") == nil)
    }
}
