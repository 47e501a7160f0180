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
            abstract: "Promote the local database, or make it a standby of the peer.",
            discussion: "polkit action org.kusu.effector1.manage-database.",
            subcommands: [Promote.self, Rejoin.self])

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
                    org.kusu.Effector1.RejoinDatabase: stops PostgreSQL, runs pg_rewind where the \
                    timelines diverged, configures streaming from PEER, starts it and waits until \
                    it streams.
                    """)
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("The peer's node name or one of its addresses.", valueName: "peer"))
            var peer: String
            func run() throws {
                try perform("database rejoin \(peer)", options) { c throws(ClientError) in
                    try c.effector.rejoinDatabase(primary: peer)
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
