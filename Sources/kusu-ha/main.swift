// kusu-ha — the administrator's client of a kusu-ha cluster.
import ArgumentParser
import ClusterAPI
import ClusterCore
import DBusKit
import HAClient
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

struct KusuHA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kusu-ha",
        abstract: "Show and control a kusu-ha high-availability pair.",
        discussion: """
            kusu-ha talks to the two kusu-ha services of this node on the D-Bus system bus: \
            kusu-hbd (org.kusu.Heartbeat1: roles, peer health, switching) and kusu-effectord \
            (org.kusu.Effector1: floating addresses, the database, the KUSU units). \
            Everything it does can also be done with busctl. It honours DBUS_SYSTEM_BUS_ADDRESS.

            Changes are authorised by polkit; calls allow interactive authorisation \
            (a polkit agent may ask for a password) unless --no-ask-password is given. \
            Members of the group kusu-admin are authorised without a password.

            EXIT STATUS
              0   success
              1   the operation was refused or failed (the error names why)
              3   not authorized (the line names the polkit action)
              4   the system bus or a service is unreachable ("kusu-hbd is not running")
              64  usage error (bad command line)
            """,
        version: "0.1.0",
        subcommands: [
            Status.self, Watch.self, Switchover.self, Takeover.self, Release.self,
            Maintenance.self, AutoFailover.self, Address.self, Database.self, Units.self, Resource.self, Sync.self,
        ])

    // Accepted before the subcommand too ("kusu-ha --no-ask-password units start").
    @OptionGroup var options: GlobalOptions
}

extension KusuHA {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the state of this node, its peer and its resources.",
            discussion: """
                Reads every property of org.kusu.Heartbeat1 and org.kusu.Effector1 and prints \
                this node's role and epoch, the peer's state and each heartbeat link (up or down, \
                last heard), switching settings, the floating addresses held here, the database \
                role, timeline and replication lag, each configured unit and its state, the health \
                of every resource (the database, the units, the [[checks]]: healthy, unhealthy, \
                failed here, with its failures), whether a handover for a failed resource would go \
                ahead (active node) or this node's copy of the service is ready (standby), and the \
                effector's last operation. A service that is not running is named as such and the \
                rest is still shown; kusu-effectord is started on demand by D-Bus activation.

                With --json, prints one JSON object with stable keys: cluster, node, now_usec, \
                heartbeat {running, error, role, epoch, auto_failover, maintenance, \
                tie_breaker_reachable, packets_received, packets_rejected, peer {name, state, \
                role, epoch, last_seen_usec}, links [{name, address, up, last_seen_usec}], \
                synchronous, failover_readiness {ready, reason} or null, resources [{name, kind, \
                state, failures, last_failure_usec, failed_on_peer, detail}], service_ready, \
                peer_service_ready, service_fault_readiness}, effector {running, error, \
                addresses, database {role, timeline, lag_bytes, lsn, replication_state, sync_state, \
                synchronous_standby_names, lag_ms, slot}, progress, units [{name, state}], busy, \
                last_operation {name, reason, finished_usec, success, error} or null}. Times are \
                CLOCK_REALTIME microseconds, 0 = never.

                Replication: on the active node, "synchronous" means commits wait for the standby; \
                "degraded" that they do not (the standby is away or catching up, [database] \
                synchronous = "degradable"). On the standby, "in sync" means it has every \
                acknowledged transaction; "NOT in sync" that an automatic failover onto it is \
                refused. A warning line appears when the standby is further behind than \
                max_lag_bytes; "automatic failover onto this node" says whether a failover would go \
                ahead now, and why not.
                """)

        @OptionGroup var options: GlobalOptions
        @Flag(name: .long, help: "Print JSON instead of text.")
        var json = false

        func run() throws {
            let client = try options.connect()
            let (cluster, node) = options.configuredNames()
            var status = client.status(configuredCluster: cluster, configuredNode: node)
            status.maxLagBytes = options.configuration()?.database?.maxLagBytes
            print(json ? status.json().rendered() : status.renderText(), terminator: json ? "\n" : "")
            // Both services absent: nothing could be shown, so say so in the status.
            if status.heartbeat.value == nil && status.effector.value == nil {
                throw ExitCode(ExitStatus.unreachable.rawValue)
            }
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print cluster events as they happen, until interrupted.",
            discussion: """
                Subscribes to PeerStateChanged and RoleChanged of org.kusu.Heartbeat1, to \
                PropertiesChanged of org.kusu.Heartbeat1 and org.kusu.Effector1, and to both \
                services appearing on and leaving the bus, and prints one timestamped line per \
                event. "watching" is printed on stderr once the subscriptions are in place. \
                Stops on SIGINT or SIGTERM with exit status 0.
                """)

        @OptionGroup var options: GlobalOptions

        func run() throws {
            let client = try options.connect()
            let loop = client.loop
            var sources: [EventSource] = []
            do {
                for sig in [SIGINT, SIGTERM] { sources.append(try loop.addSignal(sig) { loop.exit(code: 0) }) }
            } catch {
                printError("kusu-ha: \(error)")
                throw ExitCode.failure
            }
            var subscriptions: [Subscription] = []
            do {
                for rule in Events.matchRules {
                    subscriptions.append(try client.bus.addMatch(rule) { message in
                        guard let line = Events.describe(message) else { return }
                        print("\(timestamp()) \(line)")
                        fflush(nil)
                    })
                }
                // A round trip to the bus driver: once it answers, every AddMatch before it is in place.
                _ = try client.bus.callSync(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                            interface: "org.freedesktop.DBus", member: "GetId")
            } catch {
                throw fail(ClientError(.noBus(error)))
            }
            printError("kusu-ha: watching \(Heartbeat1.busName) and \(Effector1.busName); Ctrl-C to stop")
            let code: Int32
            do {
                code = try loop.run()
            } catch {
                printError("kusu-ha: \(error)")
                throw ExitCode.failure
            }
            withExtendedLifetime((subscriptions, sources)) {}
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Switchover: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hand the active role over to the peer, with zero data loss.",
            discussion: """
                Asks kusu-hbd (org.kusu.Heartbeat1.Switchover) for a planned handover of the \
                active role to the peer. polkit action org.kusu.heartbeat1.switchover.
                """)
        @OptionGroup var options: GlobalOptions
        func run() throws {
            try perform("switchover", options) { c throws(ClientError) in try c.heartbeat.switchover() }
        }
    }

    struct Takeover: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make this node active.",
            discussion: """
                Asks kusu-hbd (org.kusu.Heartbeat1.Takeover) to make this node active. Without \
                --force it is refused while the peer is alive. polkit action \
                org.kusu.heartbeat1.takeover.
                """)
        @OptionGroup var options: GlobalOptions
        @Flag(name: .long, help: "Take over even while the peer is alive (risk of two active nodes).")
        var force = false
        func run() throws {
            try perform("takeover", options) { c throws(ClientError) in try c.heartbeat.takeover(force: force) }
        }
    }

    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the units and remove the floating addresses on this node.",
            discussion: """
                Asks kusu-effectord (org.kusu.Effector1.Release) to stop the configured units in \
                reverse order, then remove the floating addresses. Idempotent. The database is \
                left as it is. polkit action org.kusu.effector1.takeover.
                """)
        @OptionGroup var options: GlobalOptions
        @Option(name: .long, help: ArgumentHelp("Why, for the effector's log (default: \"kusu-ha release by USER\").",
                                                valueName: "text"))
        var reason: String?
        func run() throws {
            let why = reason ?? "kusu-ha release by \(userName())"
            try perform("release", options) { c throws(ClientError) in try c.effector.release(reason: why) }
        }
    }

    struct Maintenance: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Switch maintenance mode on or off.",
            discussion: """
                In maintenance mode kusu-hbd takes no automatic action at all \
                (org.kusu.Heartbeat1.SetMaintenance). polkit action org.kusu.heartbeat1.set-maintenance.
                """)
        @OptionGroup var options: GlobalOptions
        @Argument(help: "on or off.") var mode: Switch
        func run() throws {
            try perform("maintenance \(mode.rawValue)", options) { c throws(ClientError) in
                try c.heartbeat.setMaintenance(mode.bool)
            }
        }
    }

    struct AutoFailover: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "auto-failover",
            abstract: "Switch automatic failover on or off.",
            discussion: """
                Whether the standby takes over by itself when the peer dies \
                (org.kusu.Heartbeat1.SetAutoFailover). polkit action org.kusu.heartbeat1.set-auto-failover.
                """)
        @OptionGroup var options: GlobalOptions
        @Argument(help: "on or off.") var mode: Switch
        func run() throws {
            try perform("auto-failover \(mode.rawValue)", options) { c throws(ClientError) in
                try c.heartbeat.setAutoFailover(mode.bool)
            }
        }
    }
}

KusuHA.main()
