// The effector's engine: runs one operation at a time as a sequence of steps,
// keeps the published state (held addresses, database, units, Busy,
// LastOperation) and reports which properties changed.
//
// It makes no decisions: every operation does what it is asked, on configured
// resources only, and is idempotent (adding a held address, promoting through a
// takeover when already primary, starting an active unit are all successes).
// Everything runs on the loop thread; blocking database work goes through
// `EventLoop.perform`.
public import ClusterCore
import ClusterAPI
public import DBusKit
public import Logging
import Glibc
import Synchronization

public enum Operation: Sendable, Equatable {
    case takeover, release
    /// A takeover that completes a handover: the old primary is alive and about to rejoin, so
    /// commits wait for it from the first one, and its replication slot is made ready.
    case takeoverAfterHandover
    case addAddress(FloatingAddress), removeAddress(FloatingAddress), announceAddress(FloatingAddress)
    case promoteDatabase
    /// Stops the database cleanly (for a switchover) and records its final LSN.
    case stopDatabase
    case rejoinDatabase(primary: IPAddress)
    /// Makes the stopped local database a standby of the peer's primary without copying
    /// anything (the old primary of a switchover), and returns once it runs as a standby.
    case followDatabase(primary: IPAddress)
    /// Builds a standby of the peer's primary: "auto", "rewind" or "basebackup".
    case cloneDatabase(primary: IPAddress, method: String)
    /// Sets the primary's synchronous_standby_names ("" or the peer, quoted).
    case setSynchronousStandby(String)
    /// Ends the primary's replication connections, so a following StopDatabase does not wait
    /// for a standby whose link is cut.
    case detachStandbys
    /// Stops the database at once, SIGKILL to all its processes (it is hung: it could not stop
    /// cleanly, and must not acknowledge anything more).
    case killDatabase
    case startUnits, stopUnits

    /// The method name, for LastOperation and the logs.
    public var name: String {
        switch self {
        case .takeover: "Takeover"
        case .takeoverAfterHandover: "TakeoverAfterHandover"
        case .release: "Release"
        case .addAddress: "AddAddress"
        case .removeAddress: "RemoveAddress"
        case .announceAddress: "AnnounceAddress"
        case .promoteDatabase: "PromoteDatabase"
        case .stopDatabase: "StopDatabase"
        case .rejoinDatabase: "RejoinDatabase"
        case .followDatabase: "FollowDatabase"
        case .cloneDatabase: "CloneDatabase"
        case .setSynchronousStandby: "SetSynchronousStandby"
        case .detachStandbys: "DetachStandbys"
        case .killDatabase: "KillDatabase"
        case .startUnits: "StartUnits"
        case .stopUnits: "StopUnits"
        }
    }
}

/// The database's health as the effector publishes it (`DatabaseHealth`).
public struct DatabaseHealth: Sendable, Equatable {
    public var answering: Bool
    public var detail: String
    /// CLOCK_REALTIME µs of the last good answer, 0 = none yet (for one timeout after the
    /// effector starts, the database counts as answering: a restart of the effector is no fault).
    public var lastAnswerUSec: UInt64
}

public struct LastOperation: Sendable, Equatable {
    public var name: String
    public var reason: String
    /// CLOCK_REALTIME µs when it finished.
    public var finishedUSec: UInt64
    public var success: Bool
    public var error: String
}

public final class Effector {
    /// Published state names, as in Effector1.Property.
    public enum Published: String, Sendable {
        case addresses = "Addresses", databaseRole = "DatabaseRole", replicationLagBytes = "ReplicationLagBytes"
        case databaseTimeline = "DatabaseTimeline", units = "Units", busy = "Busy", lastOperation = "LastOperation"
        case replicationState = "ReplicationState", syncState = "SyncState", synchronousStandbyNames = "SynchronousStandbyNames"
        case replicationLagSeconds = "ReplicationLagSeconds", replicationSlot = "ReplicationSlot", progress = "Progress"
        case replicationLastReplyUSec = "ReplicationLastReplyUSec"
        case unitStates = "UnitStates", databaseHealth = "DatabaseHealth"
    }

    public let configuration: Configuration
    let loop: EventLoop
    let addresses: any AddressEffects
    let database: (any DatabaseEffects)?
    let units: any UnitEffects
    let logger: Logger
    let wallClock: () -> UInt64

    public private(set) var busy = false
    public private(set) var lastOperation: LastOperation?
    public private(set) var heldAddresses: [FloatingAddress] = []
    public private(set) var databaseState: DatabaseSnapshot = .unknown
    /// What systemd last said of each configured unit (missing: not read).
    public private(set) var unitObservations: [String: UnitObservation] = [:]
    /// Each configured unit's ActiveState ("unknown" when not read): the `Units` property.
    public var unitStates: [String: String] { unitObservations.mapValues(\.activeState) }
    /// The database's health: whether it answered the health query within
    /// `[health] database_timeout_ms`, why not, and when it last answered (CLOCK_REALTIME µs).
    /// Answering until the first timeout passed: a restart of the effector is no fault of the database.
    public internal(set) var databaseHealth = DatabaseHealth(answering: true, detail: "", lastAnswerUSec: 0)
    var healthWatch: AnswerWatch?
    var healthTimer: TimerSource?
    var healthDeadline: TimerSource?
    /// A status read of the database is under way (one at a time: a hung server does not pile up threads).
    var readingDatabase = false
    /// The final LSN of the last StopDatabase.
    public private(set) var finalLSN: UInt64 = 0
    /// What a long operation (CloneDatabase, RejoinDatabase) is doing, in words; "" otherwise.
    public private(set) var progress = ""
    /// The running takeover promoted the database (rather than finding it primary already).
    var promotedNow = false
    /// Called with the properties that changed.
    public var onChange: ((Set<Published>) -> Void)?
    /// Announcement rounds still to send, per address.
    var announcing: [IPAddress: TimerSource] = [:]

    public init(
        configuration: Configuration, loop: EventLoop, addresses: any AddressEffects,
        database: (any DatabaseEffects)?, units: any UnitEffects, logger: Logger,
        wallClock: @escaping () -> UInt64
    ) {
        self.configuration = configuration
        self.loop = loop
        self.addresses = addresses
        self.database = database
        self.units = units
        self.logger = logger
        self.wallClock = wallClock
    }

    // MARK: Running operations

    /// Runs `operation` unless another one is running (.busy). `completion` runs on the loop.
    public func run(
        _ operation: Operation, reason: String, caller: CallerCredentials? = nil, action: String? = nil,
        completion: @escaping (Result<Void, EffectorError>) -> Void
    ) {
        guard !busy else {
            return completion(.failure(.init(.busy, "another operation is running (\(runningName ?? "unknown")); try again when Busy is false")))
        }
        busy = true
        runningName = operation.name
        changed([.busy])
        var metadata: Logger.Metadata = ["op.name": "\(operation.name)", "op.reason": "\(reason)"]
        if let caller {
            metadata["caller.uid"] = "\(caller.uid.map(String.init) ?? "?")"
            metadata["caller.pid"] = "\(caller.pid.map(String.init) ?? "?")"
            metadata["caller.unit"] = "\(caller.unit ?? "?")"
        }
        if let action { metadata["polkit.action"] = "\(action)" }
        logger.notice("effector operation started", metadata: metadata)
        timings = [:]
        timingOrder = []
        run(steps(for: operation)[...]) { [self] result in
            busy = false
            runningName = nil
            metadata["op.timing"] = "\(timingSummary)"
            let error: String
            switch result {
            case .success:
                error = ""
                switch operation {
                case .takeover, .takeoverAfterHandover: metadata["message.id"] = "\(MessageID.takeoverDone)"
                case .release: metadata["message.id"] = "\(MessageID.releaseDone)"
                default: break
                }
                logger.notice("effector operation succeeded", metadata: metadata)
            case .failure(let failure):
                error = failure.message
                metadata["error"] = "\(failure.message)"
                metadata["message.id"] = "\(MessageID.operationFailed)"
                // The reason in the message too: `journalctl -u kusu-effectord` shows it without -o verbose.
                logger.error("effector operation failed: \(failure.message)", metadata: metadata)
            }
            lastOperation = LastOperation(
                name: operation.name, reason: reason, finishedUSec: wallClock(), success: error.isEmpty, error: error)
            changed([.busy, .lastOperation])
            completion(result)
        }
    }

    var runningName: String?
    /// Time spent per kind of step in the running (or last) operation, in order of first use.
    var timings: [String: Duration] = [:]
    var timingOrder: [String] = []
    /// The step timings of the last operation (see `timingSummary`).
    public var lastTimingSummary: String { timingSummary }

    /// "promote=41.237ms address=0.081ms announce=0.030ms units=12.003ms", for the journal and benchmarks.
    var timingSummary: String {
        timingOrder.compactMap { kind in
            timings[kind].map { d in
                let micros = d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
                let fraction = String(micros % 1000)
                return "\(kind)=\(micros / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)ms"
            }
        }.joined(separator: " ")
    }

    typealias Completion = (Result<Void, EffectorError>) -> Void
    typealias Step = (kind: String, body: (@escaping Completion) -> Void)

    func run(_ steps: ArraySlice<Step>, completion: @escaping Completion) {
        guard let step = steps.first else { return completion(.success(())) }
        let started = EventLoop.clockNow
        step.body { [self] result in
            if timings[step.kind] == nil { timingOrder.append(step.kind) }
            timings[step.kind, default: .zero] += EventLoop.clockNow - started
            switch result {
            case .failure: completion(result)
            case .success: run(steps.dropFirst(), completion: completion)
            }
        }
    }

    func steps(for operation: Operation) -> [Step] {
        switch operation {
        case .takeover, .takeoverAfterHandover:
            let afterHandover = operation == .takeoverAfterHandover
            var steps: [Step] = []
            if database != nil {
                // (Only then: the usual takeover's OP_TIMING shows no empty step.)
                if databaseState.role == "down" { steps.append(("database", { self.startDatabaseIfDown($0) })) }
                steps.append(("promote", { self.promote(ignoreLag: false, alreadyPrimaryIsSuccess: true, $0) }))
                // Before the addresses: no client commits before the setting holds.
                steps.append(("sync", { self.synchronousAfterPromotion(afterHandover: afterHandover, $0) }))
                if afterHandover { steps.append(("slot", { self.preparePeerSlot($0) })) }
            }
            steps += configuration.addresses.map { address in ("address", { self.add(address, $0) }) }
            steps += configuration.addresses.map { address in ("announce", { self.startAnnouncing(address, $0) }) }
            if !configuration.units.isEmpty { steps.append(("units", { self.startUnits($0) })) }
            return steps
        case .release:
            var steps: [Step] = []
            if !configuration.units.isEmpty { steps.append(("units", { self.stopUnits($0) })) }
            steps += configuration.addresses.reversed().map { address in ("address", { self.remove(address, $0) }) }
            return steps
        case .addAddress(let address): return [("address", { self.add(address, $0) })]
        case .removeAddress(let address): return [("address", { self.remove(address, $0) })]
        case .announceAddress(let address): return [("announce", { self.startAnnouncing(address, $0) })]
        case .promoteDatabase:
            return [
                ("promote", { self.promote(ignoreLag: false, alreadyPrimaryIsSuccess: false, $0) }),
                ("sync", { self.synchronousAfterPromotion($0) }),
            ]
        case .rejoinDatabase(let primary): return rejoinSteps(primary: primary, method: "auto")
        case .followDatabase(let primary): return followSteps(primary: primary)
        case .cloneDatabase(let primary, let method): return rejoinSteps(primary: primary, method: method)
        case .setSynchronousStandby(let value): return [("sync", { self.setSynchronousStandby(value, $0) })]
        case .stopDatabase: return stopDatabaseSteps()
        case .detachStandbys: return [("detach", { self.detachStandbys($0) })]
        case .killDatabase: return killDatabaseSteps()
        case .startUnits: return [("units", { self.startUnits($0) })]
        case .stopUnits: return [("units", { self.stopUnits($0) })]
        }
    }

    // MARK: Addresses

    func add(_ address: FloatingAddress, _ done: @escaping Completion) {
        do {
            let added = try addresses.add(address)
            logger.notice(
                added ? "floating address added" : "floating address already held",
                metadata: ["vip.address": "\(address)", "vip.interface": "\(address.interface)"])
            refreshAddresses()
            done(.success(()))
        } catch {
            done(.failure(error))
        }
    }

    func remove(_ address: FloatingAddress, _ done: @escaping Completion) {
        announcing.removeValue(forKey: address.address)?.cancel()
        do {
            let removed = try addresses.remove(address)
            logger.notice(
                removed ? "floating address removed" : "floating address already absent",
                metadata: ["vip.address": "\(address)", "vip.interface": "\(address.interface)"])
            refreshAddresses()
            done(.success(()))
        } catch {
            done(.failure(error))
        }
    }

    /// Sends the first round now and schedules the remaining `arpCount - 1` rounds
    /// `arpInterval` apart on the loop (the operation does not wait for them).
    func startAnnouncing(_ address: FloatingAddress, _ done: @escaping Completion) {
        guard addresses.holds(address) != false else {
            return done(.failure(.init(.invalidArgument, "\(address.address) is not held by this node; add it before announcing it")))
        }
        announcing.removeValue(forKey: address.address)?.cancel()
        guard address.arpCount > 0 else { return done(.success(())) }
        do {
            try addresses.announce(address)
        } catch {
            return done(.failure(error))
        }
        logger.info("floating address announced", metadata: ["vip.address": "\(address)", "vip.rounds": "\(address.arpCount)"])
        scheduleAnnouncement(address, remaining: address.arpCount - 1)
        done(.success(()))
    }

    func scheduleAnnouncement(_ address: FloatingAddress, remaining: Int) {
        guard remaining > 0 else {
            announcing[address.address] = nil
            return
        }
        announcing[address.address] = try? loop.addTimer(at: loop.now + address.arpInterval) { [weak self] in
            guard let self else { return }
            do {
                try self.addresses.announce(address)
            } catch {
                self.logger.warning("cannot announce the floating address", metadata: ["vip.address": "\(address)", "error": "\(error)"])
            }
            self.scheduleAnnouncement(address, remaining: remaining - 1)
        }
    }

    /// Probes a floating address (not an operation: no Busy, nothing changes).
    public func probe(_ address: FloatingAddress, completion: @escaping (Result<AddressProbe, EffectorError>) -> Void) {
        let prober = addresses.prober
        guard let release = reserveWorker("ProbeAddress") else { return completion(.failure(workersExhausted("ProbeAddress"))) }
        perform({ prober(address) }) { result in
            release()
            completion(result)
        }
    }

    // MARK: Worker threads of the reads beside operations

    /// At most this many ProbeAddress and WaitForReplay calls run at once, each on a worker
    /// thread; more are refused at once (`Busy`), so no caller can make the effector start
    /// threads without bound. kusu-hbd needs one per floating address and one wait.
    public static let maximumWorkers = 8
    var workersInUse = 0

    /// Reserves a worker; nil when all are in use. Call the returned closure when done.
    func reserveWorker(_ name: String) -> (() -> Void)? {
        guard workersInUse < Self.maximumWorkers else {
            logger.warning("too many reads under way: refused", metadata: ["op.name": "\(name)", "workers": "\(workersInUse)"])
            return nil
        }
        workersInUse += 1
        return { [self] in workersInUse -= 1 }
    }

    func workersExhausted(_ name: String) -> EffectorError {
        EffectorError(.busy, "\(Self.maximumWorkers) probes and replay waits are already under way; \(name) refused, try again")
    }

    // MARK: Database

    /// The longest WaitForReplay.
    public static let maximumReplayWait = Duration.seconds(60)

    /// Waits on a worker thread until the local standby has replayed up to `lsn` (at most
    /// `timeout`). Not an operation: reads only, so it runs beside one and never makes the
    /// effector busy.
    public func waitForReplay(
        to lsn: UInt64, timeout: Duration, completion: @escaping (Result<(reached: Bool, replayed: UInt64), EffectorError>) -> Void
    ) {
        guard let database else { return completion(.failure(.init(.notConfigured, "no [database] is configured"))) }
        guard let release = reserveWorker("WaitForReplay") else { return completion(.failure(workersExhausted("WaitForReplay"))) }
        perform({ () -> Result<ReplayPosition, EffectorError> in
            do throws(EffectorError) {
                let (reached, replayed) = try database.waitForReplay(to: lsn, timeout: timeout)
                return .success(ReplayPosition(reached: reached, replayed: replayed))
            } catch {
                return .failure(error)
            }
        }) { result in
            release()
            completion(result.map { ($0.reached, $0.replayed) })
        }
    }

    struct ReplayPosition: Sendable {
        var reached: Bool
        var replayed: UInt64
    }

    /// Takeover on a node whose database is stopped (it handed over in a switchover, and the
    /// peer died before taking over): start its unit and wait until it answers. Decided on the
    /// state as last read (StopDatabase and the refresh record "down"), so a running database
    /// costs the takeover nothing; if it is in fact down, the promotion says so as before.
    func startDatabaseIfDown(_ done: @escaping Completion) {
        guard let database, let settings = configuration.database, databaseState.role == "down" else { return done(.success(())) }
        logger.notice("starting the stopped database for the takeover", metadata: ["unit": "\(settings.unit)"])
        units.start([settings.unit]) { [self] started in
            if case .failure = started { return done(started) }
            perform({ () -> Result<DatabaseSnapshot, EffectorError> in
                // The unit's start job may finish before the server accepts connections.
                let deadline = EventLoop.clockNow + .seconds(60)
                var status = database.status()
                while status.role == "down" || status.role == "unknown", EventLoop.clockNow < deadline {
                    usleep(20_000)
                    status = database.status()
                }
                return status.role == "down" || status.role == "unknown"
                    ? .failure(.init(.failed, "\(settings.unit) started, but the database did not accept connections within 60 s"))
                    : .success(status)
            }) { [self] result in
                if case .success(let status) = result {
                    update(database: status)
                    databaseStarted()
                }
                done(result.map { _ in () })
            }
        }
    }

    func promote(ignoreLag: Bool, alreadyPrimaryIsSuccess: Bool, _ done: @escaping Completion) {
        promotedNow = false
        guard let database else { return done(.failure(.init(.notConfigured, "no [database] is configured"))) }
        perform({ () -> Result<DatabaseSnapshot, EffectorError> in
            do throws(EffectorError) { return .success(try database.promote(ignoreLag: ignoreLag)) } catch { return .failure(error) }
        }) { [self] result in
            switch result {
            case .success(let snapshot):
                logger.notice(
                    "database promoted",
                    metadata: ["pg.timeline": "\(snapshot.timeline)", "pg.lsn": "\(snapshot.lsn)", "message.id": "\(MessageID.databasePromoted)"])
                promotedNow = true
                update(database: snapshot)
                done(.success(()))
            case .failure(let error) where error.code == .databaseNotStandby && alreadyPrimaryIsSuccess:
                logger.info("database already primary")
                done(.success(()))
            case .failure(let error):
                done(.failure(error))
            }
        }
    }

    /// Right after a promotion: what commits of the new primary wait for, by `[database]
    /// synchronous`: the peer (strict) or nobody (degradable: the peer is gone or was the
    /// primary; kusu-hbd names it again once it streams and has caught up). A failure is logged,
    /// not fatal: the service runs, and kusu-hbd corrects the setting later.
    ///
    /// `afterHandover`: the takeover completes a handover, so the old primary is alive and about
    /// to rejoin: `degradable` waits for it too, from the first commit (kusu-hbd holds it as
    /// present meanwhile, then the usual rule applies), so that it keeps every acknowledged
    /// transaction and may take the role back if this node fails right away.
    func synchronousAfterPromotion(afterHandover: Bool = false, _ done: @escaping Completion) {
        guard promotedNow, let settings = configuration.database, settings.synchronous != .off else { return done(.success(())) }
        let waitForPeer = settings.synchronous == .strict || afterHandover
        let value = waitForPeer ? ReplicationGuard.quoted(configuration.peerNode.name) : ""
        setSynchronousStandby(value) { [self] result in
            if case .failure(let error) = result {
                logger.error("cannot set synchronous_standby_names after the promotion", metadata: ["error": "\(error.message)"])
            }
            done(.success(()))
        }
    }

    func setSynchronousStandby(_ value: String, _ done: @escaping Completion) {
        guard let database else { return done(.failure(.init(.notConfigured, "no [database] is configured"))) }
        perform({ () -> Result<Void, EffectorError> in
            do throws(EffectorError) { return .success(try database.setSynchronousStandbyNames(value)) } catch { return .failure(error) }
        }) { [self] result in
            if case .success = result {
                logger.notice(
                    value.isEmpty ? "commits no longer wait for a standby" : "commits wait for the standby",
                    metadata: ["pg.synchronous_standby_names": "\(value)"])
                var snapshot = databaseState
                snapshot.synchronousStandbyNames = value
                update(database: snapshot)
            }
            done(result)
        }
    }

    /// The replication slot the peer's standby will use (`kusu_<peer>`), created if missing, so
    /// the old primary of a handover can stream as soon as it follows this node. Not fatal.
    func preparePeerSlot(_ done: @escaping Completion) {
        guard let database else { return done(.success(())) }
        let slot = DatabaseSettings.slotName(for: configuration.peerNode.name)
        perform({ () -> Result<Bool, EffectorError> in
            do throws(EffectorError) { return .success(try database.ensureReplicationSlot(slot)) } catch { return .failure(error) }
        }) { [self] result in
            switch result {
            case .success(let created):
                if created { logger.notice("replication slot created for the peer", metadata: ["pg.slot": "\(slot)"]) }
            case .failure(let error):
                logger.warning("cannot create the peer's replication slot", metadata: ["pg.slot": "\(slot)", "error": "\(error.message)"])
            }
            done(.success(()))
        }
    }

    func detachStandbys(_ done: @escaping Completion) {
        guard let database else { return done(.failure(.init(.notConfigured, "no [database] is configured"))) }
        perform({ () -> Result<Int, EffectorError> in
            do throws(EffectorError) { return .success(try database.detachStandbys()) } catch { return .failure(error) }
        }) { [self] result in
            switch result {
            case .success(let count):
                logger.notice("replication connections ended", metadata: ["pg.walsenders": "\(count)"])
                done(.success(()))
            case .failure(let error): done(.failure(error))
            }
        }
    }

    /// FollowDatabase: local work only (no connection to the peer, so a peer that dies meanwhile
    /// cannot hold the effector busy): stop, configure as a standby, start, wait until it runs.
    func followSteps(primary: IPAddress) -> [Step] {
        guard let database, let settings = configuration.database else {
            return [("check", { $0(.failure(.init(.notConfigured, "no [database] is configured"))) })]
        }
        return [
            ("check", { self.requireNoAddressHeld($0) }),
            ("stop", { done in self.units.stop([settings.unit], completion: done) }),
            ("follow", { done in
                self.perform({ () -> Result<Void, EffectorError> in
                    do throws(EffectorError) { return .success(try database.follow(primary: primary)) } catch { return .failure(error) }
                }, done)
            }),
            ("start", { done in self.startDatabaseUnit(settings.unit, done) }),
            ("standby", { done in
                self.perform({ () -> Result<DatabaseSnapshot, EffectorError> in
                    do throws(EffectorError) { return .success(try database.waitUntilStandby()) } catch { return .failure(error) }
                }) { result in
                    if case .success(let snapshot) = result {
                        self.update(database: snapshot)
                        self.logger.notice(
                            "database follows the peer's primary as a standby",
                            metadata: ["peer.address": "\(primary)", "message.id": "\(MessageID.standbyBuilt)"])
                    }
                    done(result.map { _ in () })
                }
            }),
        ]
    }

    func rejoinSteps(primary: IPAddress, method: String) -> [Step] {
        guard let database, let settings = configuration.database else {
            return [("check", { $0(.failure(.init(.notConfigured, "no [database] is configured"))) })]
        }
        let node = configuration.localNode.name
        return [
            // A node that serves the floating addresses must not turn its database into a standby.
            ("check", { self.requireNoAddressHeld($0) }),
            ("stop", { done in self.units.stop([settings.unit], completion: done) }),
            ("prepare", { done in
                // The worker queues its lines here; the loop publishes each (one PropertiesChanged
                // per line, so a client sees them all) every 100 ms.
                let box = Mutex<[String]>([])
                var watch: TimerSource?
                func poll() {
                    for line in box.withLock({ lines in defer { lines.removeAll() }; return lines }) { self.setProgress(line) }
                    watch?.reschedule(at: self.loop.now + .milliseconds(100))
                }
                watch = try? self.loop.addTimer(at: self.loop.now + .milliseconds(100)) { poll() }
                self.perform({ () -> Result<String, EffectorError> in
                    do throws(EffectorError) {
                        return .success(try database.makeStandby(primary: primary, method: method) { line in box.withLock { $0.append(line) } })
                    } catch { return .failure(error) }
                }) { result in
                    watch?.cancel()
                    poll()
                    if case .success(let used) = result {
                        self.logger.notice(
                            "database prepared as a standby",
                            metadata: ["pg.method": "\(used)", "peer.address": "\(primary)", "node.name": "\(node)", "message.id": "\(MessageID.standbyBuilt)"])
                    }
                    done(result.map { _ in () })
                }
            }),
            ("start", { done in self.startDatabaseUnit(settings.unit, done) }),
            ("stream", { done in
                self.perform({ () -> Result<DatabaseSnapshot, EffectorError> in
                    do throws(EffectorError) { return .success(try database.waitUntilStreaming()) } catch { return .failure(error) }
                }) { result in
                    switch result {
                    case .success(let snapshot):
                        self.update(database: snapshot)
                        self.setProgress("")
                        done(.success(()))
                    case .failure(let error): done(.failure(error))
                    }
                }
            }),
        ]
    }

    /// Starts the database's unit (a rejoin, a follow): its health gets a fresh grace.
    func startDatabaseUnit(_ unit: String, _ done: @escaping Completion) {
        units.start([unit]) { [self] result in
            if case .success = result { databaseStarted() }
            done(result)
        }
    }

    func setProgress(_ text: String) {
        guard text != progress else { return }
        progress = text
        if !text.isEmpty { logger.info("progress", metadata: ["op.progress": "\(text)"]) }
        changed([.progress])
    }

    /// Fails when this node still holds a floating address (database steps that need a released node).
    func requireNoAddressHeld(_ done: Completion) {
        let held = configuration.addresses.filter { addresses.holds($0) == true }
        guard held.isEmpty else {
            return done(.failure(.init(.invalidArgument, "this node still holds \(held.map(\.description).joined(separator: ", ")); release it first")))
        }
        done(.success(()))
    }

    func stopDatabaseSteps() -> [Step] {
        guard let database, let settings = configuration.database else {
            return [("check", { $0(.failure(.init(.notConfigured, "no [database] is configured"))) })]
        }
        return [
            // Stopping the database under a served address would break the service: release first.
            ("check", { self.requireNoAddressHeld($0) }),
            ("stop", { done in self.units.stop([settings.unit], completion: done) }),
            ("final", { done in
                self.perform({ () -> Result<UInt64, EffectorError> in
                    do throws(EffectorError) { return .success(try database.finalCheckpointLSN()) } catch { return .failure(error) }
                }) { result in
                    switch result {
                    case .success(let lsn):
                        self.finalLSN = lsn
                        self.logger.notice("database stopped for a switchover", metadata: ["pg.final_lsn": "\(lsn)"])
                        self.update(database: DatabaseSnapshot(role: "down", lsn: lsn, timeline: self.databaseState.timeline))
                        done(.success(()))
                    case .failure(let error): done(.failure(error))
                    }
                }
            }),
        ]
    }

    func killDatabaseSteps() -> [Step] {
        guard database != nil, let settings = configuration.database else {
            return [("check", { $0(.failure(.init(.notConfigured, "no [database] is configured"))) })]
        }
        return [
            // Killing the database under a served address would break the service: release first.
            ("check", { self.requireNoAddressHeld($0) }),
            ("kill", { done in
                self.logger.notice("killing the database (it cannot stop cleanly)", metadata: ["unit": "\(settings.unit)"])
                self.units.stopKilling(settings.unit) { result in
                    if case .success = result {
                        self.update(database: DatabaseSnapshot(role: "down", lsn: self.databaseState.lsn, timeline: self.databaseState.timeline))
                    }
                    done(result)
                }
            }),
        ]
    }

    func update(database snapshot: DatabaseSnapshot) {
        var changes: Set<Published> = []
        if snapshot.role != databaseState.role { changes.insert(.databaseRole) }
        if snapshot.timeline != databaseState.timeline { changes.insert(.databaseTimeline) }
        if snapshot.replicationLagBytes != databaseState.replicationLagBytes { changes.insert(.replicationLagBytes) }
        if snapshot.replicationState != databaseState.replicationState { changes.insert(.replicationState) }
        if snapshot.syncState != databaseState.syncState { changes.insert(.syncState) }
        if snapshot.synchronousStandbyNames != databaseState.synchronousStandbyNames { changes.insert(.synchronousStandbyNames) }
        if snapshot.replicationLagSeconds != databaseState.replicationLagSeconds { changes.insert(.replicationLagSeconds) }
        if snapshot.replicationSlot != databaseState.replicationSlot { changes.insert(.replicationSlot) }
        if snapshot.replicationLastReplyUSec != databaseState.replicationLastReplyUSec { changes.insert(.replicationLastReplyUSec) }
        databaseState = snapshot
        changed(changes)
    }

    /// Runs blocking work on a thread; a failure to start the thread is an operation failure.
    func perform<T: Sendable>(_ work: @escaping @Sendable () -> Result<T, EffectorError>, _ done: @escaping (Result<T, EffectorError>) -> Void) {
        do {
            try loop.perform(work, completion: done)
        } catch {
            done(.failure(.init(.failed, "cannot start a worker thread: \(error)")))
        }
    }

    // MARK: Units

    func startUnits(_ done: @escaping Completion) {
        units.start(configuration.units) { [self] result in
            refreshUnits()
            done(result)
        }
    }

    func stopUnits(_ done: @escaping Completion) {
        units.stop(configuration.units.reversed()) { [self] result in
            refreshUnits()
            done(result)
        }
    }

    // MARK: Observed state

    /// Re-reads which configured addresses the kernel holds.
    public func refreshAddresses() {
        let held = configuration.addresses.filter { addresses.holds($0) == true }
        if held != heldAddresses {
            heldAddresses = held
            changed([.addresses])
        }
    }

    /// Re-reads what systemd says of every configured unit (or of `only` these).
    public func refreshUnits(_ only: [String]? = nil) {
        let names = only?.filter(configuration.units.contains) ?? configuration.units
        guard !names.isEmpty else { return }
        units.observations(names) { [self] observations in
            var updated = unitObservations
            for name in names { updated[name] = observations[name] }
            guard updated != unitObservations else { return }
            let before = unitStates
            unitObservations = updated
            changed(unitStates == before ? [.unitStates] : [.unitStates, .units])
        }
    }

    /// Re-reads the database's state on a worker thread (skipped while an operation runs, and
    /// while the previous read has not returned).
    public func refreshDatabase() {
        guard let database, !busy, !readingDatabase else { return }
        readingDatabase = true
        do {
            try loop.perform({ database.status() }) { [self] snapshot in
                readingDatabase = false
                update(database: snapshot)
            }
        } catch {
            readingDatabase = false
        }
    }

    func changed(_ properties: Set<Published>) {
        guard !properties.isEmpty else { return }
        onChange?(properties)
    }
}
