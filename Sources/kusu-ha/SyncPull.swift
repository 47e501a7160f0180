// kusu-ha sync pull: the standby's puller (kusu-ha-sync.service), or one round (--once).
import ArgumentParser
import ClusterAPI
import ClusterCore
import DBusKit
import FileSync
import HAClient
import Logging
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

extension KusuHA.Sync {
    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pull the trees from the active peer while this node is the standby.",
            discussion: """
                The puller of kusu-ha-sync.service. Once a second it reads Role, PeerState and \
                PeerRole from kusu-hbd (org.kusu.Heartbeat1) and pulls only while this node is \
                standby and the peer is active and heard (alive or late). Otherwise it pauses, \
                and says why: "this node is active: it is the source, not a copy", "the peer is \
                dead: ...", "the roles are unknown (kusu-hbd is not running)". A pull that is \
                running when that changes is stopped.

                Each tree with pull = true is pulled at start, then every interval_s seconds \
                (counted from the start of the previous pull), at once when a pause ends, and at \
                once for every tree on SIGUSR1 (systemctl kill -s USR1 kusu-ha-sync). A failed \
                pull is tried again after 5 s, then 10 s, 20 s, ... but never later than the \
                interval. Trees are pulled one at a time.

                A pull runs rsync against the peer's kusu-ha-rsyncd (see "kusu-ha sync serve"), \
                over the heartbeat links in link order: when the connection fails on one link, \
                the next one is tried. rsync runs with --archive --numeric-ids (owners, groups, \
                modes, times and symbolic links as on the active node; device files are not \
                copied), --delete-delay unless delete = false (files matching exclude are \
                neither copied nor deleted), and --delay-updates into .kusu-sync-partial \
                directories, so that no file is ever seen half-copied under its name. The \
                password goes to rsync on its standard input.

                Each result is logged to the journal: "file tree synchronised" (SYNC_PATH, \
                SYNC_PEER, SYNC_FILES, SYNC_DELETED, SYNC_BYTES, SYNC_DURATION_MS; at level debug \
                when nothing changed), "cannot synchronise file tree" (SYNC_PATH, SYNC_ERROR), \
                "file tree synchronisation paused" (SYNC_REASON) and "... resumed". The state of \
                each tree goes to the status file (see "kusu-ha sync status"), which kusu-hbd \
                publishes on the bus. SIGTERM or SIGINT stops the puller, and a running rsync \
                with it, with exit status 0.

                With --once: one round and exit. Every tree with pull = true is pulled now, one \
                line per tree is printed, and the status file is updated. Refused while \
                kusu-ha-sync.service (or another puller) runs.

                EXIT STATUS
                  0   stopped by SIGTERM or SIGINT; with --once: every tree was
                      pulled, or none is to be pulled
                  1   the configuration or the key is unusable, or another puller
                      runs; with --once: a pull failed, or pulling is paused
                  4   with --once: kusu-hbd or the system bus cannot be reached
                  64  usage error
                """)

        @OptionGroup var options: SyncOptions

        @Flag(name: .long, help: "Pull every tree once, print the results and exit.")
        var once = false

        @Option(name: .long, help: ArgumentHelp("The status file to write (its directory holds the lock).",
                                                valueName: "path"))
        var statusFile: String = FileSyncPaths.statusFile

        func run() throws {
            let configuration = try loadSyncConfiguration(options.config)
            let secret = try loadSyncSecret(configuration)
            let logger: Logger
            if once && getenv("JOURNAL_STREAM") == nil {
                // A terminal: the printed lines say it all.
                logger = Logger(label: "kusu-ha-sync", factory: { _ in SwiftLogNoOpLogHandler() })
            } else {
                JournalLogHandler.bootstrap()
                var journal = Logger(label: "kusu-ha-sync")
                // "kusu-ha-sync[PID]" in journalctl rather than the program's name.
                if getenv("JOURNAL_STREAM") != nil { journal[metadataKey: "syslog.identifier"] = "kusu-ha-sync" }
                logger = journal
            }
            let directory = String(statusFile[..<(statusFile.lastIndex(of: "/") ?? statusFile.startIndex)])
            if !directory.isEmpty { try makeDirectory(directory, mode: 0o755) }
            let lock = try takeLock((directory.isEmpty ? "." : directory) + "/lock")
            defer { close(lock) }
            let code: Int32
            do {
                let puller = try Puller(configuration: configuration, secret: secret, statusPath: statusFile,
                                        once: once, logger: logger)
                code = try puller.run()
            } catch {
                throw syncFailure("\(error)")
            }
            if code != 0 { throw ExitCode(code) }
        }

        /// flock(2) on the lock file, so that two pullers never write into the same trees.
        func takeLock(_ path: String) throws -> Int32 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw syncFailure("cannot open \(path): \(String(cString: strerror(errno)))") }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw syncFailure("another puller holds \(path) (kusu-ha-sync.service is running?): not pulling")
            }
            return fd
        }
    }
}

/// The puller's shell: the roles from the bus, the scheduler's decisions, one rsync at a time,
/// the status file and the journal. Confined to the thread running its event loop.
final class Puller {
    struct Running {
        let index: Int
        var commands: [RsyncPullCommand]
        var link: Int
        let process: RsyncProcess
        let startedAt: MonotonicInstant
        let startedWall: UInt64
        /// Per-link errors so far.
        var errors: [String]
        /// Set when the puller stopped it on purpose: why.
        var interruption: String?
    }

    let configuration: Configuration
    let secret: SyncSecret
    let statusPath: String
    let once: Bool
    let logger: Logger
    let loop: EventLoop
    var bus: BusConnection?
    var rolesCall: PendingCall?
    var scheduler: PullScheduler
    var status: FileSyncStatus
    var running: Running?
    var stopping = false
    var exitCode: Int32 = 0
    var timer: TimerSource?
    var killTimer: TimerSource?
    var sources: [EventSource] = []
    /// --once: the trees attempted so far, and whether any failed.
    var attempted: Set<Int> = []
    var anyFailed = false
    /// Whether the last pull of a tree succeeded (a success after a failure is logged at info).
    var lastSucceeded: [Int: Bool] = [:]

    init(configuration: Configuration, secret: SyncSecret, statusPath: String, once: Bool, logger: Logger) throws(SystemError) {
        self.configuration = configuration
        self.secret = secret
        self.statusPath = statusPath
        self.once = once
        self.logger = logger
        loop = try EventLoop()
        scheduler = PullScheduler(trees: configuration.sync)
        // Keep what an earlier puller knew (a restart must not forget when a tree was last synchronised).
        let previous = try? FileSyncStatus.read(path: statusPath)
        let now = realtimeUSec()
        status = FileSyncStatus(trees: configuration.sync.map { tree in
            var entry = previous?[tree.path] ?? TreeStatus(path: tree.path, state: .pending, sinceUSec: now)
            entry.enter(tree.pull ? .pending : .notPulled, at: now)
            return entry
        })
    }

    /// Runs until SIGTERM/SIGINT (or, with --once, the end of the round); the exit status.
    func run() throws(SystemError) -> Int32 {
        // Signals first: blocked before the first worker thread exists, so only the loop's
        // signalfd sees them.
        for sig in [SIGTERM, SIGINT] { sources.append(try loop.addSignal(sig) { [unowned self] in stop() }) }
        sources.append(try loop.addSignal(SIGUSR1) { [unowned self] in
            logger.notice("pulling every file tree now", metadata: ["sync.cause": "SIGUSR1"])
            scheduler.pullAllNow()
            tick()
        })
        signal(SIGPIPE, SIG_IGN)
        writeStatus()
        ServiceManager.notify("READY=1\nSTATUS=reading the roles from kusu-hbd")
        if scheduler.entries.isEmpty {
            logger.notice("no file tree to pull", metadata: ["sync.trees": "\(configuration.sync.count)"])
            if once { print("no [[sync]] tree to pull") }
            return 0
        }
        if once { scheduler.pullAllNow() }
        timer = try loop.addTimer(at: loop.now) { [unowned self] in tick() }
        _ = try loop.run()
        withExtendedLifetime(sources) {}
        return exitCode
    }

    var now: MonotonicInstant { MonotonicInstant(EventLoop.clockNow) }

    // MARK: The round

    /// Once a second (and when a tree is due, and after each pull): read the roles, then act.
    func tick() {
        guard !stopping else { return }
        // Every second, or when the next tree is due (no sooner than 100 ms: a due tree starts
        // from the roles' reply, not from the timer); while a pull runs, every second (to stop it
        // if the roles change).
        let second = now + .seconds(1)
        let next = running == nil ? min(second, scheduler.nextDue(at: now) ?? second) : second
        timer?.reschedule(at: max(next, now + .milliseconds(100)).sinceOrigin)
        guard rolesCall == nil else { return }
        do {
            if bus == nil { bus = try BusConnection.system(on: loop) }
            rolesCall = try bus!.getAllProperties(
                destination: BusName(stringLiteral: Heartbeat1.busName), path: ObjectPath(stringLiteral: Heartbeat1.objectPath),
                interface: InterfaceName(stringLiteral: Heartbeat1.interface), timeout: .seconds(2)
            ) { [unowned self] result in
                rolesCall = nil
                switch result {
                case .success(let properties):
                    let hb = HeartbeatStatus(properties: properties)
                    apply(PullPermission.evaluate(PairView(role: hb.role, peerState: hb.peerState, peerRole: hb.peerRole)),
                          reachable: true)
                case .failure(let error):
                    let client = ClientError.call(.heartbeat, error)
                    // Anything but "kusu-hbd is not on the bus" may be a broken connection: reconnect.
                    if client.exitStatus != .unreachable || error.name.contains("Disconnected") || error.name.contains("NoReply") {
                        bus = nil
                    }
                    apply(PullPermission.rolesUnknown(client.line), reachable: false)
                }
            }
        } catch {
            bus = nil
            apply(PullPermission.rolesUnknown("cannot connect to the system bus: \(error.message)"), reachable: false)
        }
    }

    /// The roles are known (or known to be unknown): update, stop a pull that is no longer
    /// allowed, start the next due one.
    func apply(_ permission: PullPermission, reachable: Bool) {
        guard !stopping else { return }
        if let change = scheduler.update(permission) {
            let wall = realtimeUSec()
            switch change {
            case .paused(let reason):
                logger.notice("file tree synchronisation paused", metadata: ["sync.reason": "\(reason)"])
                ServiceManager.notify("STATUS=paused: \(reason)")
                for i in status.trees.indices where status.trees[i].state != .notPulled {
                    status.trees[i].enter(.paused, message: reason, at: wall)
                }
            case .resumed:
                logger.notice("file tree synchronisation resumed")
                ServiceManager.notify("STATUS=pulling from the active peer")
                for i in status.trees.indices where status.trees[i].state == .paused {
                    status.trees[i].enter(.pending, at: wall)
                }
            }
            writeStatus()
        }
        if case .paused(let reason) = permission {
            if running != nil {
                interrupt("pulling is paused: \(reason)")
            } else if once {
                print("not pulling: \(reason)")
                finish(code: reachable ? ExitStatus.failed.rawValue : ExitStatus.unreachable.rawValue)
            }
            return
        }
        startNext()
    }

    func startNext() {
        guard running == nil, !stopping else { return }
        let due = scheduler.due(at: now).filter { !once || !attempted.contains($0) }
        guard let index = due.first else {
            if once { finish(code: anyFailed ? ExitStatus.failed.rawValue : 0) }
            return
        }
        let tree = configuration.sync[index]
        let commands = RsyncPullCommand.perLink(tree: tree, index: index, configuration: configuration)
        attempted.insert(index)
        start(index: index, commands: commands, link: 0, startedAt: now, startedWall: realtimeUSec(), errors: [])
    }

    func start(index: Int, commands: [RsyncPullCommand], link: Int, startedAt: MonotonicInstant, startedWall: UInt64,
               errors: [String]) {
        let command = commands[link]
        switch RsyncProcess.spawn(command.arguments, password: secret.password) {
        case .failure(let failure):
            finished(index: index, commands: commands, startedAt: startedAt, startedWall: startedWall,
                     outcome: .failure(failure.reason), errors: errors)
        case .success(let (process, outputFD)):
            running = Running(index: index, commands: commands, link: link, process: process, startedAt: startedAt,
                              startedWall: startedWall, errors: errors)
            let pid = process.pid
            do {
                try loop.perform({ RsyncProcess.collect(pid: pid, outputFD: outputFD) }) { [unowned self] result in
                    rsyncEnded(result)
                }
            } catch {
                // No worker thread: the process cannot be followed. Stop it and wait here.
                process.kill(SIGKILL)
                rsyncEnded(RsyncProcess.collect(pid: pid, outputFD: outputFD))
            }
        }
    }

    /// The rsync of `running` has ended.
    func rsyncEnded(_ result: RsyncResult) {
        guard var current = running else { return }
        running = nil
        killTimer?.cancel()
        killTimer = nil
        let command = current.commands[current.link]
        if let reason = current.interruption {
            // Stopped on purpose: neither a success nor a failure of the tree.
            scheduler.abandon(index: current.index)
            logger.notice("file tree pull interrupted", metadata: [
                "sync.path": "\(command.tree.path)", "sync.reason": "\(reason)",
            ])
            let wall = realtimeUSec()
            status.trees[current.index].lastAttemptUSec = current.startedWall
            if case .paused(let pause)? = scheduler.permission {
                status.trees[current.index].enter(.paused, message: pause, at: wall)
            }
            writeStatus()
            if once {
                print("\(command.tree.path)  interrupted: \(reason)")
                anyFailed = true
            }
            if stopping { loop.exit(code: exitCode) } else { startNext() }
            return
        }
        if result.succeeded {
            finished(index: current.index, commands: current.commands, startedAt: current.startedAt,
                     startedWall: current.startedWall, outcome: .success((result, command.peer)), errors: current.errors)
            return
        }
        current.errors.append("\(command.peer): \(result.errorSummary)")
        if result.worthAnotherLink && current.link + 1 < current.commands.count && !stopping {
            logger.info("cannot pull over this link, trying the next", metadata: [
                "sync.path": "\(command.tree.path)", "sync.peer": "\(command.peer)", "sync.error": "\(result.errorSummary)",
            ])
            start(index: current.index, commands: current.commands, link: current.link + 1, startedAt: current.startedAt,
                  startedWall: current.startedWall, errors: current.errors)
            return
        }
        finished(index: current.index, commands: current.commands, startedAt: current.startedAt,
                 startedWall: current.startedWall, outcome: .failure(current.errors.joined(separator: "; ")),
                 errors: current.errors)
    }

    enum Outcome {
        case success((RsyncResult, IPAddress))
        case failure(String)
    }

    /// Records the end of one tree's pull: scheduler, status file, journal, --once line.
    func finished(index: Int, commands: [RsyncPullCommand], startedAt: MonotonicInstant, startedWall: UInt64,
                  outcome: Outcome, errors: [String]) {
        let tree = configuration.sync[index]
        let wall = realtimeUSec()
        let milliseconds = (now - startedAt).components.seconds * 1000 + (now - startedAt).components.attoseconds / 1_000_000_000_000_000
        switch outcome {
        case .success(let (result, peer)):
            scheduler.record(index: index, succeeded: true, started: startedAt)
            status.trees[index].recordSuccess(started: startedWall, at: wall)
            let stats = result.statistics
            let changed = (stats?.filesTransferred ?? 1) > 0 || (stats?.filesDeleted ?? 1) > 0
            let level: Logger.Level = changed || lastSucceeded[index] != true ? .info : .debug
            logger.log(level: level, "file tree synchronised", metadata: [
                "sync.path": "\(tree.path)", "sync.module": "\(SyncTree.moduleName(index: index))", "sync.peer": "\(peer)",
                "sync.files": "\(stats?.filesTransferred ?? 0)", "sync.deleted": "\(stats?.filesDeleted ?? 0)",
                "sync.bytes": "\(stats?.bytesTransferred ?? 0)", "sync.duration_ms": "\(milliseconds)",
            ])
            lastSucceeded[index] = true
            if once {
                let counts = stats.map { "\($0.filesTransferred) files, \($0.bytesTransferred) bytes, \($0.filesDeleted) deleted" }
                print("\(tree.path)  synchronised from \(peer) in \(milliseconds) ms" + (counts.map { " (\($0))" } ?? ""))
            }
        case .failure(let error):
            scheduler.record(index: index, succeeded: false, started: startedAt)
            status.trees[index].recordFailure(error, started: startedWall, at: wall)
            logger.warning("cannot synchronise file tree", metadata: [
                "sync.path": "\(tree.path)", "sync.module": "\(SyncTree.moduleName(index: index))", "sync.error": "\(error)",
                "sync.duration_ms": "\(milliseconds)",
            ])
            lastSucceeded[index] = false
            anyFailed = true
            if once { print("\(tree.path)  failed: \(error)") }
        }
        writeStatus()
        if stopping {
            loop.exit(code: exitCode)
            return
        }
        startNext()
    }

    // MARK: Stopping

    /// Stops the running rsync (its whole process group): SIGTERM, then SIGKILL after 5 s.
    func interrupt(_ reason: String) {
        guard running != nil, running?.interruption == nil else { return }
        running?.interruption = reason
        running?.process.kill(SIGTERM)
        let process = running?.process
        killTimer = try? loop.addTimer(at: loop.now + .seconds(5)) { process?.kill(SIGKILL) }
    }

    /// SIGTERM/SIGINT: stop, after the running rsync if any.
    func stop() {
        guard !stopping else { return }
        logger.info("stopping")
        ServiceManager.notify("STOPPING=1")
        stopping = true
        timer?.cancel()
        rolesCall?.cancel()
        if running != nil {
            interrupt("kusu-ha-sync is stopping")
        } else {
            loop.exit(code: exitCode)
        }
    }

    /// --once: the round is over.
    func finish(code: Int32) {
        exitCode = code
        stopping = true
        timer?.cancel()
        loop.exit(code: code)
    }

    func writeStatus() {
        do {
            try status.write(path: statusPath)
        } catch {
            logger.error("cannot write the status file", metadata: ["sync.error": "\(error)"])
        }
    }
}
