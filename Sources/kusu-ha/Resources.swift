// kusu-ha address|database|units: direct effector operations.
import ArgumentParser
import HAClient

extension KusuHA {
    struct Address: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add, remove or announce a floating address on this node.",
            discussion: """
                Only addresses listed in the configuration ([[addresses]]) are accepted; any other \
                is refused with NotConfigured, whatever the caller's rights. polkit action \
                org.kusu.effector1.manage-address.
                """,
            subcommands: [Add.self, Remove.self, Announce.self])

        struct Add: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Add a configured floating address (idempotent).",
                discussion: "org.kusu.Effector1.AddAddress. ADDR may carry its /prefix.")
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("The floating address, e.g. 198.18.0.100.", valueName: "addr")) var address: String
            func run() throws {
                try perform("address add \(address)", options) { c throws(ClientError) in try c.effector.addAddress(address) }
            }
        }

        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Remove a configured floating address (idempotent).",
                discussion: "org.kusu.Effector1.RemoveAddress.")
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("The floating address.", valueName: "addr")) var address: String
            func run() throws {
                try perform("address remove \(address)", options) { c throws(ClientError) in
                    try c.effector.removeAddress(address)
                }
            }
        }

        struct Announce: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Announce a held floating address (gratuitous ARP / unsolicited NA).",
                discussion: """
                    org.kusu.Effector1.AnnounceAddress: arp_count rounds, arp_interval_ms apart; \
                    returns after the first round. The address must be held here.
                    """)
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("The floating address.", valueName: "addr")) var address: String
            func run() throws {
                try perform("address announce \(address)", options) { c throws(ClientError) in
                    try c.effector.announceAddress(address)
                }
            }
        }
    }

    struct Database: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Promote the local database, make it a standby of the peer, or build one from scratch.",
            discussion: """
                polkit action org.kusu.effector1.manage-database. The replication state (sync, lag in \
                bytes and seconds, slot, timeline) is in `kusu-ha status`.
                """,
            subcommands: [Promote.self, Rejoin.self, Clone.self, Synchronous.self])

        struct Promote: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Promote the local standby; returns once it accepts writes.",
                discussion: """
                    org.kusu.Effector1.PromoteDatabase. Refused with DatabaseNotStandby on a primary \
                    and ReplicationLag when the standby is behind by more than max_lag_bytes.
                    """)
            @OptionGroup var options: GlobalOptions
            func run() throws {
                try perform("database promote", options) { c throws(ClientError) in try c.effector.promoteDatabase() }
            }
        }

        struct Rejoin: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Make the local database a standby of the peer.",
                discussion: """
                    org.kusu.Effector1.RejoinDatabase: the same as `kusu-ha database clone PEER \
                    --method auto` (kusu-hbd does this by itself after a failover, when the old \
                    primary comes back). Prints progress while it runs.
                    """)
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("The peer's node name or one of its addresses.", valueName: "peer"))
            var peer: String
            func run() throws {
                try perform("database rejoin \(peer)", options) { c throws(ClientError) in
                    try c.effector.rejoinDatabase(primary: peer) { print("  \($0)") }
                }
            }
        }

        struct Clone: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Make the local database a streaming standby of the peer's primary, from scratch if need be.",
                discussion: """
                    org.kusu.Effector1.CloneDatabase. Works on an empty, missing, diverged or foreign \
                    data directory ([database] data_directory). Stops the local PostgreSQL, creates \
                    the replication slot kusu_<this node> on the primary (so it keeps the WAL this \
                    standby still needs; set max_slot_wal_keep_size there to bound it), then copies:

                      auto        pg_basebackup when the directory holds no cluster or another \
                                  cluster, or when the database is smaller than the primary's WAL \
                                  directory (which pg_rewind copies in any case); pg_rewind \
                                  otherwise, and pg_basebackup if pg_rewind fails
                      rewind      pg_rewind only
                      basebackup  a fresh copy with pg_basebackup -X stream

                    An existing directory that pg_basebackup replaces is kept as \
                    <data_directory>.kusu-previous (and put back if the copy fails). Then it writes \
                    standby.signal, primary_conninfo (application_name = this node), \
                    primary_slot_name and wal_retrieve_retry_interval = 200ms, starts PostgreSQL and \
                    waits until it streams. Progress lines are printed while it runs. Refused on a \
                    node that holds a floating address (release it first).
                    """)
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("The peer's node name or one of its addresses.", valueName: "peer"))
            var peer: String
            @Option(help: ArgumentHelp("auto, rewind or basebackup.", valueName: "method"))
            var method: String = "auto"

            func validate() throws {
                guard ["auto", "rewind", "basebackup"].contains(method) else {
                    throw ValidationError("--method must be auto, rewind or basebackup, not '\(method)'")
                }
            }

            func run() throws {
                try perform("database clone \(peer)", options) { c throws(ClientError) in
                    try c.effector.cloneDatabase(primary: peer, method: method) { print("  \($0)") }
                }
            }
        }

        struct Synchronous: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "synchronous",
                abstract: "Make the local primary's commits wait for the peer's standby, or for none.",
                discussion: """
                    org.kusu.Effector1.SetSynchronousStandby: sets synchronous_standby_names to the \
                    peer (on) or '' (off) and reloads PostgreSQL. With [database] synchronous = \
                    "degradable" or "strict", kusu-hbd manages this setting itself on the active node \
                    and will change it back; use this with synchronous = "off" or in maintenance.
                    """)
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("on: commits wait for the peer's standby; off: for none.", valueName: "on|off"))
            var state: Switch

            func run() throws {
                let peer = options.configuredPeer() ?? ""
                if state.bool && peer.isEmpty {
                    throw ValidationError("cannot read the peer's name from \(options.config)")
                }
                try perform("database synchronous \(state.rawValue)", options) { c throws(ClientError) in
                    try c.effector.setSynchronousStandby(state.bool ? peer : "")
                }
            }
        }
    }

    struct Units: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start or stop the configured KUSU units.",
            discussion: "polkit action org.kusu.effector1.manage-units.",
            subcommands: [Start.self, Stop.self])

        struct Start: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Start the configured units in order, waiting for each.",
                discussion: "org.kusu.Effector1.StartUnits.")
            @OptionGroup var options: GlobalOptions
            func run() throws {
                try perform("units start", options) { c throws(ClientError) in try c.effector.startUnits() }
            }
        }

        struct Stop: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Stop the configured units in reverse order, waiting for each.",
                discussion: "org.kusu.Effector1.StopUnits.")
            @OptionGroup var options: GlobalOptions
            func run() throws {
                try perform("units stop", options) { c throws(ClientError) in try c.effector.stopUnits() }
            }
        }
    }
}
