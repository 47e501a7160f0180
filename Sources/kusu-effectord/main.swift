// kusu-effectord — the privileged effector of kusu-ha.
import ArgumentParser
import ClusterAPI
import ClusterCore
import DBusKit
import EffectorService
import Glibc
import Logging
import SystemSupport

// Block the signals the loop handles before any thread exists, as sd-event requires.
var blocked = sigset_t()
sigemptyset(&blocked)
sigaddset(&blocked, SIGTERM)
sigaddset(&blocked, SIGINT)
pthread_sigmask(SIG_BLOCK, &blocked, nil)

struct EffectorDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kusu-effectord",
        abstract: "The kusu-ha effector: floating IP, database promotion and KUSU units.",
        discussion: """
            kusu-effectord owns org.kusu.Effector1 on the D-Bus system bus and does what an \
            authorised caller asks: take over (promote the PostgreSQL standby, add the floating \
            addresses through rtnetlink, announce them with gratuitous ARP, start the KUSU units \
            through systemd) or release, and each of those steps on its own. It makes no \
            decisions: kusu-hbd decides, an administrator may ask with kusu-ha or busctl.

            Every method is authorised by polkit (org.kusu.effector1.*); polkit unavailable \
            means denied. Only resources named in the configuration can be touched, one \
            operation runs at a time, and every operation is idempotent. On SIGTERM it finishes \
            a running operation before it exits.

            It runs as root with only CAP_NET_ADMIN, CAP_NET_RAW and what the database needs, \
            and is normally started by D-Bus activation. It honours DBUS_SYSTEM_BUS_ADDRESS.
            Files: /etc/kusu-ha/kusu-ha.toml (see kusu-ha.toml(5)).
            """,
        version: "0.1.0")

    @Option(name: .long, help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config: String = Paths.configuration

    @Option(name: .long, help: ArgumentHelp("How often observed state (addresses, database, units) is re-read, in milliseconds.", valueName: "ms"))
    var refreshMs: Int = 1000

    @Flag(name: .long, help: "Check the configuration, print a summary and exit (0 if valid).")
    var checkConfig = false

    func validate() throws {
        guard (50...60_000).contains(refreshMs) else { throw ValidationError("--refresh-ms must be between 50 and 60000") }
    }

    func run() throws {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: config)
        } catch {
            printError("kusu-effectord: \(error)")
            throw ExitCode(2)
        }
        if checkConfig {
            let addresses = configuration.addresses.map(\.description).joined(separator: ", ")
            let database = configuration.database.map { "\($0.unit) on port \($0.port)" } ?? "none"
            let units = configuration.units.joined(separator: ", ")
            print("\(config): valid; node \(configuration.localNode.name)")
            print("floating addresses: \(addresses.isEmpty ? "none" : addresses)")
            print("database: \(database)")
            print("units: \(units.isEmpty ? "none" : units)")
            return
        }

        JournalLogHandler.bootstrap()
        let logger = Logger(label: "kusu-effectord")
        do {
            let loop = try EventLoop()
            let bus = try BusConnection.system(on: loop)
            bus.exitLoopOnDisconnect = true
            let effects = try LiveEffects(configuration: configuration, bus: bus)
            let effector = Effector(
                configuration: configuration, loop: loop, addresses: effects.addresses, database: effects.database,
                units: effects.units, logger: logger, wallClock: wallClockMicroseconds)
            let service = EffectorBus(effector: effector, bus: bus, logger: logger)
            try service.start()
            effects.watchUnits { unit in effector.refreshUnits([unit]) }
            effector.startDatabaseHealth()

            // Observed state: read now, then periodically.
            let period = Duration.milliseconds(refreshMs)
            var refresh: TimerSource?
            func tick() {
                effector.refreshAddresses()
                effector.refreshDatabase()
                effector.refreshUnits()
                refresh?.reschedule(at: loop.now + period)
            }
            refresh = try loop.addTimer(at: loop.now) { tick() }

            var stopping = false
            func stop() {
                guard !stopping else { return }
                stopping = true
                ServiceManager.notify("STOPPING=1")
                logger.notice("kusu-effectord stopping", metadata: ["op.busy": "\(effector.busy)"])
                waitIdleThenExit()
            }
            // Never leave in the middle of a takeover: finish the running operation first.
            func waitIdleThenExit() {
                if !effector.busy { return loop.exit(code: 0) }
                refresh = try? loop.addTimer(at: loop.now + .milliseconds(20)) { waitIdleThenExit() }
            }
            let term = try loop.addSignal(SIGTERM) { stop() }
            let int = try loop.addSignal(SIGINT) { stop() }
            _ = loop.enableWatchdog()
            ServiceManager.notify("READY=1\nSTATUS=serving org.kusu.Effector1")
            logger.notice("kusu-effectord started", metadata: ["node.name": "\(configuration.localNode.name)"])
            let code = try loop.run()
            withExtendedLifetime((term, int, service, effects, refresh)) {}
            if code != 0 {
                logger.error("kusu-effectord lost the system bus", metadata: ["exit.code": "\(code)"])
                throw ExitCode(code)
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            printError("kusu-effectord: \(error)")
            throw ExitCode(1)
        }
    }
}

EffectorDaemon.main()
