// rsyncd.conf(5) for the node's [[sync]] trees: what the peer may pull from this node.
public import ClusterCore

/// Where the two services keep their files at run time (systemd's `RuntimeDirectory=`).
public enum FileSyncPaths {
    /// kusu-ha-rsyncd.service: rsyncd.conf, the secrets file and the lock file (mode 0700).
    public static let daemonRuntimeDirectory = "/run/kusu-ha-rsyncd"
    /// kusu-ha-sync.service: the status file and the puller's lock (mode 0755, so that
    /// kusu-hbd, running as user kusu-ha, can read the status).
    public static let syncRuntimeDirectory = "/run/kusu-ha-sync"
    /// The puller's status file, one line per tree (``FileSyncStatus``).
    public static let statusFile = "/run/kusu-ha-sync/status"
    /// Held (flock) by the running puller, so that `kusu-ha sync pull --once` cannot pull into
    /// the same trees at the same time.
    public static let lockFile = "/run/kusu-ha-sync/lock"
    /// rsync, from the Debian package of the same name.
    public static let rsync = "/usr/bin/rsync"
}

/// The contents of rsyncd.conf: one read-only module per `[[sync]]` entry.
///
/// Every module is `kusu-<index>` (``SyncTree/moduleName(index:)``), read-only, unlisted,
/// chrooted into the tree, read as root (so that every file can be sent, whatever its
/// mode) and open only to the peer's heartbeat addresses (`hosts allow`, everything else
/// denied) after challenge-response authentication of user `kusu-sync` with
/// ``SyncSecret`` (at least SHA-256). The daemon listens on every address on port 873;
/// reverse DNS is off, and it logs to syslog (so to the journal) under the tag
/// `kusu-ha-rsyncd`.
public struct RsyncDaemonConfiguration: Sendable, Equatable {
    public static let defaultPort: UInt16 = 873
    /// Connections at once, all modules together (each pull of the peer is one).
    public static let defaultMaxConnections = 4
    /// The daemon drops a client that sends nothing for this long.
    public static let ioTimeout: Duration = .seconds(300)

    public var trees: [SyncTree]
    /// Who may connect: the peer's heartbeat addresses, one per link.
    public var peerAddresses: [IPAddress]
    public var secretsFile: String
    /// `lock file` (for `max connections`): in the runtime directory, since the daemon's
    /// file system is read-only.
    public var lockFile: String
    public var port: UInt16
    public var maxConnections: Int

    public init(trees: [SyncTree], peerAddresses: [IPAddress], secretsFile: String, lockFile: String,
                port: UInt16 = RsyncDaemonConfiguration.defaultPort,
                maxConnections: Int = RsyncDaemonConfiguration.defaultMaxConnections) {
        self.trees = trees
        self.peerAddresses = peerAddresses
        self.secretsFile = secretsFile
        self.lockFile = lockFile
        self.port = port
        self.maxConnections = maxConnections
    }

    /// The daemon of this node: its trees, served to its peer; files in `runtimeDirectory`.
    public init(configuration: Configuration, runtimeDirectory: String) {
        self.init(trees: configuration.sync, peerAddresses: configuration.peerNode.addresses,
                  secretsFile: runtimeDirectory + "/rsyncd.secrets", lockFile: runtimeDirectory + "/rsyncd.lock")
    }

    /// The file's text.
    public var text: String {
        var lines = [
            "# rsyncd.conf written by \"kusu-ha sync serve\" from the [[sync]] entries of kusu-ha.toml.",
            "# Do not edit: it is written again at every start of kusu-ha-rsyncd.service.",
            "port = \(port)",
            "max connections = \(maxConnections)",
            "lock file = \(lockFile)",
            "# Clients are matched by address only: no DNS lookups.",
            "reverse lookup = no",
            "forward lookup = no",
            "# No \"log file\": syslog, which journald files under kusu-ha-rsyncd.service.",
            "syslog tag = kusu-ha-rsyncd",
            "timeout = \(Int(Self.ioTimeout.components.seconds))",
        ]
        for (index, tree) in trees.enumerated() {
            lines += [
                "",
                "[\(SyncTree.moduleName(index: index))]",
                "    comment = kusu-ha [[sync]] \(index)",
                "    path = \(Self.modulePath(tree.path))",
                "    read only = yes",
                "    write only = no",
                "    list = no",
                "    use chroot = yes",
                "    numeric ids = yes",
                "    # Read as root, so that every file is sent whatever its owner and mode.",
                "    uid = root",
                "    gid = root",
                "    hosts allow = \(peerAddresses.map(\.description).joined(separator: " "))",
                "    hosts deny = *",
                "    auth users = \(SyncSecret.user):ro",
                "    secrets file = \(secretsFile)",
                "    strict modes = yes",
                "    auth digest = sha256",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Why `path` cannot be written into rsyncd.conf (a line break would end the value and
    /// start a line of the attacker's choosing), or nil when it can.
    public static func unsupportedPath(_ path: String) -> String? {
        let bad = path.unicodeScalars.contains { $0 == "\n" || $0 == "\r" || $0 == "\u{0}" }
        return bad ? "the path \(path.debugDescription) contains a line break or a NUL character" : nil
    }

    /// A path as rsyncd.conf takes it: `%` doubled (values expand `%VAR%`); a trailing slash
    /// keeps a trailing space, which the parser would otherwise drop.
    static func modulePath(_ path: String) -> String {
        let escaped = path.replacing("%", with: "%%")
        return escaped.hasSuffix(" ") ? escaped + "/" : escaped
    }
}
