// kusu-hbd — the kusu-ha heartbeat monitor.
import ArgumentParser
import ClusterAPI
import ClusterCore
import DBusKit
import Glibc
import Logging
import Monitor
import SystemSupport

// Block the signals the loop handles before any thread exists, as sd-event requires.
var blocked = sigset_t()
sigemptyset(&blocked)
sigaddset(&blocked, SIGTERM)
sigaddset(&blocked, SIGINT)
pthread_sigmask(SIG_BLOCK, &blocked, nil)

struct HeartbeatDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kusu-hbd",
        abstract: "The kusu-ha heartbeat monitor.",
        discussion: """
            kusu-hbd exchanges authenticated UDP heartbeats (HMAC-SHA256) with the other node \
            of a kusu-ha pair over every configured link, tracks the peer's health \
            (unknown, alive, late, dead) and publishes it on the D-Bus system bus as \
            org.kusu.Heartbeat1 at /org/kusu/Heartbeat1. The peer is dead only when every \
            link has been silent for cluster.dead_ms.

            It decides, and asks kusu-effectord to act: a standby takes over when the peer \
            is dead on every link, a tie-breaker answers, nothing answers for the floating \
            addresses (an ARP probe) and its database has every acknowledged transaction; \
            an active node that reaches none of its tie-breakers while its standby does \
            hands over (service_loss_handover); of two active nodes that hear each other, \
            the one with the lower epoch yields. A switchover moves the role without losing \
            anything, and if the standby is lost before it takes over, the node takes the \
            role back. "kusu-ha status" shows why a decision would be refused now.

            It watches what the active node serves: the units of [units] start as systemd \
            reports them, the database's health query (both through kusu-effectord) and the \
            [[checks]] it probes itself. A unit that stops is started again; a resource whose \
            failures reach its threshold ([health] migration_threshold for a unit, one failure \
            for the database or a check) is given up, and the active node hands over to a \
            standby that is ready, has not given it up too, and has every acknowledged \
            transaction (a hung database is killed first). What a node gave up goes into its \
            heartbeats, so the service does not come back to it; "kusu-ha resource cleanup" \
            forgets the failures.

            It runs unprivileged as the system user kusu-ha. Under systemd it uses the UDP \
            socket passed by kusu-hbd.socket (so port 694 needs no capability); started by \
            hand it binds cluster.port itself. It honours DBUS_SYSTEM_BUS_ADDRESS. It logs to \
            the journal, notifies systemd (READY, WATCHDOG, STOPPING) and stops on SIGTERM.

            Inspect it with: busctl introspect org.kusu.Heartbeat1 /org/kusu/Heartbeat1
            Files: /etc/kusu-ha/kusu-ha.toml (see kusu-ha.toml(5)), /var/lib/kusu-ha/state.
            """,
        version: "0.1.0")

    @Option(name: .long, help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config: String = Paths.configuration

    @Option(
        name: .long,
        help: ArgumentHelp("Where the persistent state lives (default: $STATE_DIRECTORY, else /var/lib/kusu-ha).", valueName: "dir"))
    var stateDirectory: String?

    @Flag(name: .long, help: "Check the configuration and the heartbeat key, print a summary and exit (0 if valid).")
    var checkConfig = false

    func run() throws {
        let configuration: Configuration
        let key: HeartbeatKey
        do {
            configuration = try Configuration.load(path: config)
            key = try configuration.loadHeartbeatKey()
        } catch {
            printError("kusu-hbd: \(error)")
            throw ExitCode(2)
        }
        if checkConfig {
            let peer = configuration.peerNode
            print(
                "\(config): valid; cluster \(configuration.cluster.name), this node \(configuration.localNode.name), "
                    + "peer \(peer.name) on \(configuration.linkCount) link(s): "
                    + peer.addresses.map { "\($0)" }.joined(separator: ", "))
            return
        }

        JournalLogHandler.bootstrap()
        let logger = Logger(label: "kusu-hbd")
        let directory = stateDirectory ?? getenv("STATE_DIRECTORY").map { String(cString: $0) } ?? Paths.stateDirectory
        do {
            let loop = try EventLoop()
            let bus = try BusConnection.system(on: loop)
            // Losing the system bus ends the loop with a failure; systemd restarts us.
            bus.exitLoopOnDisconnect = true
            let store = try StateStore(directory: directory)
            let monitor = try HeartbeatMonitor(
                configuration: configuration, key: key, loop: loop, bus: bus, store: store, logger: logger)
            try monitor.start(passedSockets: ServiceManager.listenedSockets())
            let term = try loop.addSignal(SIGTERM) { monitor.stop() }
            let int = try loop.addSignal(SIGINT) { monitor.stop() }
            _ = loop.enableWatchdog()
            ServiceManager.notify("READY=1\nSTATUS=watching peer \(configuration.peerNode.name)")
            // Once the start-up work is done (the configuration, the bus, the first exchanges),
            // the code only it ran need not stay mapped: see ResidentCode.
            let trim = try loop.addTimer(at: loop.now + .seconds(10)) { ResidentCode.releaseExecutableCode() }
            let code = try loop.run()
            withExtendedLifetime((term, int, monitor, trim)) {}
            if code != 0 {
                logger.error("kusu-hbd lost the system bus", metadata: ["exit.code": "\(code)"])
                throw ExitCode(code)
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            // One line on stderr, which under systemd is the journal too.
            printError("kusu-hbd: \(error)")
            throw ExitCode(1)
        }
    }
}

HeartbeatDaemon.main()
