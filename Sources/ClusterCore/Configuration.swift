/// The configuration of kusu-ha, as read from `/etc/kusu-ha/kusu-ha.toml`.
///
/// Build one with ``parse(_:file:hostName:)``, which checks every key and value and refuses
/// the file with a ``ConfigError`` naming the line and what is wrong.
public struct Configuration: Sendable, Equatable {
    public var cluster: ClusterSettings
    /// Exactly two nodes; the local one is named by `cluster.node`.
    public var nodes: [NodeSettings]
    /// The floating addresses, in takeover order.
    public var addresses: [FloatingAddress]
    /// The KUSU PostgreSQL, if `[database]` is present.
    public var database: DatabaseSettings?
    /// The systemd units started on takeover (`[units] start`), in order.
    public var units: [String]
    /// The fencing command and its arguments (`[fencing] command`), if any.
    public var fencingCommand: [String]?
    /// The file trees kept on the standby (`[[sync]]`).
    public var sync: [SyncTree]
    /// How the active node's resources are watched and recovered (`[health]`).
    public var health: HealthSettings
    /// Probes of what the active node serves (`[[checks]]`), in the order written.
    public var checks: [HealthCheck]

    public init(
        cluster: ClusterSettings,
        nodes: [NodeSettings],
        addresses: [FloatingAddress] = [],
        database: DatabaseSettings? = nil,
        units: [String] = [],
        fencingCommand: [String]? = nil,
        sync: [SyncTree] = [],
        health: HealthSettings = HealthSettings(),
        checks: [HealthCheck] = []
    ) {
        self.cluster = cluster
        self.nodes = nodes
        self.addresses = addresses
        self.database = database
        self.units = units
        self.fencingCommand = fencingCommand
        self.sync = sync
        self.health = health
        self.checks = checks
    }

    /// The node this configuration is for (the one named `cluster.node`).
    ///
    /// A parsed configuration always has it; a hand-built one without it is a programmer error.
    public var localNode: NodeSettings {
        guard let node = nodes.first(where: { $0.name == cluster.node }) else {
            preconditionFailure("cluster.node '\(cluster.node)' is not one of the configured nodes")
        }
        return node
    }

    /// The other node.
    public var peerNode: NodeSettings {
        guard let node = nodes.first(where: { $0.name != cluster.node }) else {
            preconditionFailure("the configuration has no peer for '\(cluster.node)'")
        }
        return node
    }

    /// The number of heartbeat links (addresses per node).
    public var linkCount: Int { localNode.addresses.count }
}

/// `[cluster]`.
public struct ClusterSettings: Sendable, Equatable {
    public var name: String
    /// This node's name: `cluster.node`, or the host name when absent.
    public var node: String
    public var authKeyFile: String
    /// The UDP port of the heartbeats.
    public var port: UInt16
    public var interval: Duration
    public var warn: Duration
    public var dead: Duration
    public var autoFailover: Bool
    public var autoFailback: Bool
    public var tieBreakers: [IPAddress]
    /// How often the tie-breakers are pinged; one counts as reachable while it answered a ping
    /// sent within the last three intervals.
    public var tieBreakerInterval: Duration
    /// The active node hands over to an in-sync standby when it cannot reach any tie-breaker
    /// while the standby can (its service network is cut; the heartbeat links still work).
    public var serviceLossHandover: Bool

    public static let defaultName = "kusu"
    public static let defaultAuthKeyFile = "/etc/kusu-ha/authkey"
    public static let defaultPort: UInt16 = 694

    public init(
        name: String = ClusterSettings.defaultName,
        node: String,
        authKeyFile: String = ClusterSettings.defaultAuthKeyFile,
        port: UInt16 = ClusterSettings.defaultPort,
        interval: Duration = .milliseconds(200),
        warn: Duration = .milliseconds(600),
        dead: Duration = .milliseconds(1000),
        autoFailover: Bool = true,
        autoFailback: Bool = false,
        tieBreakers: [IPAddress] = [],
        tieBreakerInterval: Duration = .seconds(1),
        serviceLossHandover: Bool = true
    ) {
        self.name = name
        self.node = node
        self.authKeyFile = authKeyFile
        self.port = port
        self.interval = interval
        self.warn = warn
        self.dead = dead
        self.autoFailover = autoFailover
        self.autoFailback = autoFailback
        self.tieBreakers = tieBreakers
        self.tieBreakerInterval = tieBreakerInterval
        self.serviceLossHandover = serviceLossHandover
    }
}

/// One `[[nodes]]` entry.
public struct NodeSettings: Sendable, Equatable {
    public var name: String
    /// 0...1000; higher is preferred. Defaults to 0.
    public var priority: Int
    /// One heartbeat address per link: index = link number.
    public var addresses: [IPAddress]

    public init(name: String, priority: Int = 0, addresses: [IPAddress]) {
        self.name = name
        self.priority = priority
        self.addresses = addresses
    }
}

/// One `[[addresses]]` entry: a floating IP.
public struct FloatingAddress: Sendable, Equatable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: Int
    public var interface: String
    /// Gratuitous ARPs (unsolicited NAs) sent on takeover.
    public var arpCount: Int
    public var arpInterval: Duration

    public init(address: IPAddress, prefixLength: Int, interface: String, arpCount: Int = 5,
                arpInterval: Duration = .milliseconds(200)) {
        self.address = address
        self.prefixLength = prefixLength
        self.interface = interface
        self.arpCount = arpCount
        self.arpInterval = arpInterval
    }

    /// `address/prefixLength`, as written in the configuration.
    public var description: String { "\(address)/\(prefixLength)" }
}

/// `[database]`: the KUSU PostgreSQL.
public struct DatabaseSettings: Sendable, Equatable {
    public var unit: String
    public var socketDirectory: String
    public var port: UInt16
    public var dataDirectory: String
    public var user: String
    /// Automatic failover is refused beyond this replay lag.
    public var maxLagBytes: UInt64
    /// How the active node's primary waits for the standby (`synchronous`).
    public var synchronous: SynchronousMode

    public init(
        unit: String = "postgresql@15-main.service",
        socketDirectory: String = "/var/run/postgresql",
        port: UInt16 = 5432,
        dataDirectory: String = "/var/lib/postgresql/15/main",
        user: String = "postgres",
        maxLagBytes: UInt64 = 1_048_576,
        synchronous: SynchronousMode = .degradable
    ) {
        self.unit = unit
        self.socketDirectory = socketDirectory
        self.port = port
        self.dataDirectory = dataDirectory
        self.user = user
        self.maxLagBytes = maxLagBytes
        self.synchronous = synchronous
    }

    /// The physical replication slot the primary keeps for `node`'s standby: "kusu_" and the
    /// node name with every character outside [a-z0-9_] replaced by "_" (slot names allow only
    /// those), at most 63 bytes.
    public static func slotName(for node: String) -> String {
        let cleaned = node.lowercased().unicodeScalars.map { scalar -> Character in
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "_" ? Character(scalar) : "_"
        }
        return String(("kusu_" + String(cleaned)).prefix(63))
    }
}

/// `[database] synchronous`: whether commits on the primary wait for the standby.
public enum SynchronousMode: String, Sendable, Equatable, CaseIterable {
    /// Commits wait for the standby while it is there; when it is declared dead (or its
    /// replication connection is gone for `dead_ms`) the primary stops waiting, so the service
    /// goes on, and waits again once the standby has caught up. A standby that was not in sync
    /// when the primary died is refused for automatic failover.
    case degradable
    /// Commits always wait for the standby: while it is away, writes wait too.
    case strict
    /// kusu-ha leaves `synchronous_standby_names` alone (asynchronous replication, or managed
    /// by the administrator).
    case off
}

/// One `[[sync]]` entry: a directory tree the standby keeps a copy of, pulled from the active node.
public struct SyncTree: Sendable, Equatable {
    /// Absolute path of the directory, the same on both nodes.
    public var path: String
    /// Pulled from the active node while this node is standby (false: listed, served to the
    /// peer, but not pulled here).
    public var pull: Bool
    /// How often the standby pulls it.
    public var interval: Duration
    /// rsync --exclude patterns.
    public var exclude: [String]
    /// Files gone on the active node are deleted here too.
    public var delete: Bool

    public init(path: String, pull: Bool = true, interval: Duration = .seconds(30), exclude: [String] = [], delete: Bool = true) {
        self.path = path
        self.pull = pull
        self.interval = interval
        self.exclude = exclude
        self.delete = delete
    }

    /// The name of the tree in the peer's rsync daemon: "kusu-" and its index.
    public static func moduleName(index: Int) -> String { "kusu-\(index)" }
}

/// Why a configuration file was refused: the file, the line where known, and what is wrong
/// in words an administrator understands.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// `FILE:LINE: message`, or `FILE: message` when the line is unknown.
    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}
