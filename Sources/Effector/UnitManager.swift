public import DBusKit
public import ClusterCore
import Glibc
// Glibc types (timespec, SOCK_*) that the CNetlink headers also declare are attributed
// to whichever module clang builds first; importing both keeps every build seeing them.
import CNetlink

/// Why a unit operation failed.
public struct UnitError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Sendable {
        /// systemd knows no such unit (org.freedesktop.systemd1.NoSuchUnit).
        case noSuchUnit
        /// The job finished with a result other than "done" (see `result`).
        case jobFailed
        /// A D-Bus error other than the above (refused, bad unit file, bus gone, ...).
        case busError
        /// The operation's deadline passed. The job, if queued, keeps running in systemd.
        case timeout
    }

    public var code: Code
    public var unit: String
    /// systemd's job result for `.jobFailed`: failed, timeout, dependency, canceled, ...
    public var result: String?
    /// What went wrong, in words; names the unit.
    public var message: String

    public init(code: Code, unit: String, result: String? = nil, message: String) {
        self.code = code
        self.unit = unit
        self.result = result
        self.message = message
    }

    public var description: String { message }
}

/// Starts, stops and watches systemd units through org.freedesktop.systemd1.
///
/// Confined to the thread of the bus connection's event loop, like the
/// connection; every completion and `onChange` call runs there. Each operation
/// calls its completion exactly once. Operations on different units may run
/// concurrently; an operation's job is identified by the job path systemd
/// returns, so jobs of other clients never complete ours.
public final class UnitManager {
    public let bus: BusConnection

    private static let destination: BusName = "org.freedesktop.systemd1"
    private static let managerPath: ObjectPath = "/org/freedesktop/systemd1"
    private static let managerInterface: InterfaceName = "org.freedesktop.systemd1.Manager"
    private static let unitInterface: InterfaceName = "org.freedesktop.systemd1.Unit"
    private static let serviceInterface: InterfaceName = "org.freedesktop.systemd1.Service"

    private enum SubscribeState {
        case idle
        case pending([(UnitError?) -> Void])
        case done
    }

    private var subscribeState = SubscribeState.idle
    private var jobRemovedMatch: Subscription?
    /// Operations whose StartUnit/StopUnit reply has not arrived yet, by operation id.
    private var awaitingReply: [Int: JobOperation] = [:]
    /// Operations waiting for JobRemoved, by job path.
    private var byJob: [String: JobOperation] = [:]
    /// JobRemoved results that arrived while some reply was outstanding, by job
    /// path: the reply may name one of them. Emptied when no reply is outstanding.
    private var earlyResults: [String: String] = [:]
    private var nextOperationID = 0
    /// Unit object paths already resolved with LoadUnit.
    private var unitPaths: [String: ObjectPath] = [:]
    /// Watched units: their PropertiesChanged matches and last known ActiveState.
    private var watches: [String: Watch] = [:]

    public init(bus: BusConnection) {
        self.bus = bus
    }

    deinit {
        // Matches go with their Subscription objects. Pending operations are
        // dropped: their completions do not run (the timers and calls they own die
        // with them once the bus drops its references).
        for op in awaitingReply.values { op.abandon() }
        for op in byJob.values { op.abandon() }
    }

    // MARK: Jobs

    /// Starts `unit` (StartUnit, mode "replace") and waits for its job's result:
    /// "done" is success, any other result is `.jobFailed` carrying it.
    ///
    /// The unit's failed state and systemd's start rate limit are reset first (ResetFailedUnit):
    /// a start from here is kusu-ha's decision that the unit runs on this node now (a takeover,
    /// or a restart within kusu-hbd's own migration threshold), and failures from before — a
    /// unit given up here when this node was active a few seconds ago — must not make systemd
    /// refuse it with "start-limit-hit". The reset is sent just before StartUnit on the same
    /// connection, so systemd handles it first without a round trip of its own; its reply is
    /// not waited for (a unit that is not loaded, or not failed, answers with an error that
    /// changes nothing).
    public func start(_ unit: String, timeout: Duration,
                      completion: @escaping (Result<Void, UnitError>) -> Void) {
        runJob("StartUnit", verb: "start", unit: unit, timeout: timeout, beforeCall: { [weak self] in
            self?.resetFailed(unit)
        }, completion: completion)
    }

    /// ResetFailedUnit(unit), its reply ignored.
    private func resetFailed(_ unit: String) {
        _ = try? bus.call(destination: Self.destination, path: Self.managerPath, interface: Self.managerInterface,
                          member: "ResetFailedUnit", [.string(unit)]) { _ in }
    }

    /// Stops `unit` (StopUnit, mode "replace") and waits for its job's result.
    public func stop(_ unit: String, timeout: Duration,
                     completion: @escaping (Result<Void, UnitError>) -> Void) {
        runJob("StopUnit", verb: "stop", unit: unit, timeout: timeout, completion: completion)
    }

    /// Stops `unit` at once, whatever its processes do: queues its stop job (so systemd does not
    /// restart it), then SIGKILL to every process of the unit (KillUnit, whom "all": a stopped
    /// or hung process dies too), and waits for the stop job's result. For a server that can
    /// no longer stop cleanly.
    public func stopKilling(_ unit: String, timeout: Duration, completion: @escaping (Result<Void, UnitError>) -> Void) {
        runJob("StopUnit", verb: "stop", unit: unit, timeout: timeout, afterQueued: { [weak self] in
            guard let self else { return }
            do {
                try self.bus.call(destination: Self.destination, path: Self.managerPath, interface: Self.managerInterface,
                                  member: "KillUnit", [.string(unit), .string("all"), .int32(SIGKILL)]) { _ in
                    // A unit with no process left answers with an error: nothing to kill, the stop completes.
                }
            } catch {}
        }, completion: completion)
    }

    /// Starts `units` one after the other, each job waited for before the next;
    /// ends at the first failure. `timeout` applies to each unit.
    public func start(_ units: [String], timeout: Duration,
                      completion: @escaping (Result<Void, UnitError>) -> Void) {
        sequence(units[...], timeout: timeout, operation: start, completion: completion)
    }

    /// Stops `units` in the order given (pass the start order reversed); ends at
    /// the first failure. `timeout` applies to each unit.
    public func stop(_ units: [String], timeout: Duration,
                     completion: @escaping (Result<Void, UnitError>) -> Void) {
        sequence(units[...], timeout: timeout, operation: stop, completion: completion)
    }

    private func sequence(_ units: ArraySlice<String>, timeout: Duration,
                          operation: @escaping (String, Duration, @escaping (Result<Void, UnitError>) -> Void) -> Void,
                          completion: @escaping (Result<Void, UnitError>) -> Void) {
        guard let unit = units.first else {
            completion(.success(()))
            return
        }
        operation(unit, timeout) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure: completion(result)
            case .success: self.sequence(units.dropFirst(), timeout: timeout, operation: operation, completion: completion)
            }
        }
    }

    private func runJob(_ method: MemberName, verb: String, unit: String, timeout: Duration,
                        beforeCall: (() -> Void)? = nil, afterQueued: (() -> Void)? = nil,
                        completion: @escaping (Result<Void, UnitError>) -> Void) {
        let op = JobOperation(id: nextOperationID, unit: unit, verb: verb, completion: completion)
        nextOperationID += 1
        let deadline = bus.loop.now + timeout
        do {
            op.timer = try bus.loop.addTimer(at: deadline) { [weak self, op] in
                self?.forget(op)
                op.finish(.failure(UnitError(code: .timeout, unit: unit,
                                             message: "\(verb) of \(unit) did not finish within \(Self.text(timeout))")))
            }
        } catch {
            op.finish(.failure(UnitError(code: .busError, unit: unit, message: "\(verb) of \(unit): \(error)")))
            return
        }
        ensureSubscribed { [weak self, op] error in
            guard let self, !op.isFinished else { return }
            if let error {
                op.finish(.failure(UnitError(code: error.code, unit: unit,
                                             message: "\(verb) of \(unit): \(error.message)")))
                return
            }
            self.callJobMethod(method, op: op, deadline: deadline, beforeCall: beforeCall, afterQueued: afterQueued)
        }
    }

    private func callJobMethod(_ method: MemberName, op: JobOperation, deadline: Duration,
                               beforeCall: (() -> Void)?, afterQueued: (() -> Void)?) {
        let unit = op.unit
        let remaining = deadline - bus.loop.now
        guard remaining > .zero else { return }     // the timer finishes it
        beforeCall?()
        awaitingReply[op.id] = op
        do {
            op.call = try bus.call(destination: Self.destination, path: Self.managerPath,
                                   interface: Self.managerInterface, member: method,
                                   [.string(unit), .string("replace")],
                                   timeout: max(remaining, .milliseconds(1))) { [weak self, op] result in
                guard let self else { return }
                self.awaitingReply[op.id] = nil
                defer { if self.awaitingReply.isEmpty { self.earlyResults.removeAll() } }
                op.call = nil
                if op.isFinished { return }
                switch result {
                case .failure(let error):
                    op.finish(.failure(Self.unitError(error, verb: op.verb, unit: unit)))
                case .success(let values):
                    guard let job = values.first?.objectPath?.rawValue else {
                        op.finish(.failure(UnitError(code: .busError, unit: unit,
                                                     message: "\(op.verb) of \(unit): \(method) returned no job path")))
                        return
                    }
                    op.job = job
                    afterQueued?()
                    if let jobResult = self.earlyResults.removeValue(forKey: job) {
                        op.finish(Self.outcome(jobResult, verb: op.verb, unit: unit))
                    } else {
                        self.byJob[job] = op
                    }
                }
            }
        } catch {
            awaitingReply[op.id] = nil
            op.finish(.failure(Self.unitError(error, verb: op.verb, unit: unit)))
        }
    }

    /// JobRemoved(u id, o job, s unit, s result).
    private func jobRemoved(_ signal: SignalMessage) {
        guard signal.arguments.count >= 4,
              let job = signal.arguments[1].objectPath?.rawValue,
              let result = signal.arguments[3].string else { return }
        if let op = byJob.removeValue(forKey: job) {
            op.finish(Self.outcome(result, verb: op.verb, unit: op.unit))
        } else if !awaitingReply.isEmpty {
            earlyResults[job] = result
        }
    }

    private func forget(_ op: JobOperation) {
        awaitingReply[op.id] = nil
        if let job = op.job, byJob[job] === op { byJob[job] = nil }
        if awaitingReply.isEmpty { earlyResults.removeAll() }
    }

    private static func outcome(_ result: String, verb: String, unit: String) -> Result<Void, UnitError> {
        if result == "done" { return .success(()) }
        return .failure(UnitError(code: .jobFailed, unit: unit, result: result,
                                  message: "\(verb) of \(unit) failed: job result '\(result)'"))
    }

    private static func unitError(_ error: DBusError, verb: String, unit: String) -> UnitError {
        switch error.name {
        case "org.freedesktop.systemd1.NoSuchUnit":
            UnitError(code: .noSuchUnit, unit: unit, message: "\(verb) of \(unit): no such unit (\(error.message))")
        case "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout":
            UnitError(code: .timeout, unit: unit, message: "\(verb) of \(unit): systemd did not answer (\(error.message))")
        default:
            UnitError(code: .busError, unit: unit, message: "\(verb) of \(unit): \(error.name): \(error.message)")
        }
    }

    // MARK: Subscribe

    /// Installs the JobRemoved match and calls Manager.Subscribe once (systemd
    /// broadcasts JobRemoved and unit PropertiesChanged only while some client is
    /// subscribed). The match is installed before Subscribe and any job method
    /// is sent, so the bus daemon has it before systemd can emit the signal.
    private func ensureSubscribed(_ done: @escaping (UnitError?) -> Void) {
        switch subscribeState {
        case .done:
            done(nil)
            return
        case .pending(var waiters):
            waiters.append(done)
            subscribeState = .pending(waiters)
            return
        case .idle:
            break
        }
        if jobRemovedMatch == nil {
            do {
                jobRemovedMatch = try bus.addMatch(
                    "type='signal',sender='org.freedesktop.systemd1',path='/org/freedesktop/systemd1',"
                        + "interface='org.freedesktop.systemd1.Manager',member='JobRemoved'"
                ) { [weak self] signal in self?.jobRemoved(signal) }
            } catch {
                done(UnitError(code: .busError, unit: "", message: "cannot watch systemd jobs: \(error)"))
                return
            }
        }
        subscribeState = .pending([done])
        let finish: (UnitError?) -> Void = { [weak self] error in
            guard let self, case .pending(let waiters) = self.subscribeState else { return }
            // On failure go back to idle, so that the next operation tries again.
            self.subscribeState = error == nil ? .done : .idle
            for waiter in waiters { waiter(error) }
        }
        do {
            try bus.call(destination: Self.destination, path: Self.managerPath, interface: Self.managerInterface,
                         member: "Subscribe", [], timeout: .seconds(25)) { result in
                switch result {
                case .success:
                    finish(nil)
                case .failure(let e) where e.name == "org.freedesktop.systemd1.AlreadySubscribed":
                    finish(nil)
                case .failure(let e):
                    let code: UnitError.Code = e.name == "org.freedesktop.DBus.Error.NoReply" ? .timeout : .busError
                    finish(UnitError(code: code, unit: "", message: "cannot subscribe to systemd: \(e)"))
                }
            }
        } catch {
            finish(UnitError(code: .busError, unit: "", message: "cannot subscribe to systemd: \(error)"))
        }
    }

    // MARK: States

    /// The ActiveState of each unit (LoadUnit, then Properties.Get on the unit's
    /// object), read concurrently. A unit systemd does not know is "inactive"; a
    /// unit whose state could not be read is "unknown".
    public func activeStates(_ units: [String], completion: @escaping ([String: String]) -> Void) {
        var states: [String: String] = [:]
        var outstanding = Set(units)
        if outstanding.isEmpty {
            completion(states)
            return
        }
        for unit in outstanding {
            activeState(unit) { state in
                states[unit] = state
                outstanding.remove(unit)
                if outstanding.isEmpty { completion(states) }
            }
        }
    }

    /// What systemd says of each unit (load, active and sub state, the service's result, its
    /// automatic restarts, when it last became inactive), read concurrently; a unit whose
    /// state could not be read is missing from the result. A non-service unit has result "" and
    /// no restarts.
    public func observations(_ units: [String], completion: @escaping ([String: UnitObservation]) -> Void) {
        var observations: [String: UnitObservation] = [:]
        var outstanding = Set(units)
        if outstanding.isEmpty { return completion(observations) }
        for unit in units {
            observe(unit) { observation in
                observations[unit] = observation
                outstanding.remove(unit)
                if outstanding.isEmpty { completion(observations) }
            }
        }
    }

    /// The properties an observation is made of, on which interface.
    private static let observed: [(interface: InterfaceName, name: String)] = [
        (unitInterface, "LoadState"), (unitInterface, "ActiveState"), (unitInterface, "SubState"),
        (unitInterface, "InactiveEnterTimestampMonotonic"), (serviceInterface, "Result"), (serviceInterface, "NRestarts"),
    ]

    private func observe(_ unit: String, _ done: @escaping (UnitObservation?) -> Void) {
        unitPath(unit) { [weak self] path in
            guard let self, let path else { return done(nil) }
            var values: [String: Value] = [:]
            var outstanding = Self.observed.count
            var failed = false
            func finish() {
                outstanding -= 1
                guard outstanding == 0 else { return }
                guard !failed, let load = values["LoadState"]?.string, let active = values["ActiveState"]?.string else { return done(nil) }
                done(UnitObservation(
                    loadState: load, activeState: active, subState: values["SubState"]?.string ?? "",
                    result: values["Result"]?.string ?? "", restarts: values["NRestarts"]?.uint32 ?? 0,
                    inactiveSince: values["InactiveEnterTimestampMonotonic"]?.uint64 ?? 0))
            }
            for (interface, name) in Self.observed {
                do {
                    try self.bus.getProperty(destination: Self.destination, path: path, interface: interface, name: name) { result in
                        switch result {
                        case .success(let value): values[name] = value
                        // A unit that is not a service has no Service interface: no result, no restarts.
                        case .failure where interface == Self.serviceInterface: break
                        case .failure: failed = true
                        }
                        finish()
                    }
                } catch {
                    failed = true
                    finish()
                }
            }
        }
    }

    private func activeState(_ unit: String, _ done: @escaping (String) -> Void) {
        unitPath(unit) { [weak self] path in
            guard let self, let path else { return done("unknown") }
            self.readActiveState(path, done)
        }
    }

    private func readActiveState(_ path: ObjectPath, _ done: @escaping (String) -> Void) {
        do {
            try bus.getProperty(destination: Self.destination, path: path, interface: Self.unitInterface,
                                name: "ActiveState") { result in
                if case .success(let value) = result, let state = value.string {
                    done(state)
                } else {
                    done("unknown")
                }
            }
        } catch {
            done("unknown")
        }
    }

    /// The unit's object path, via LoadUnit (cached: systemd derives it from the name).
    private func unitPath(_ unit: String, _ done: @escaping (ObjectPath?) -> Void) {
        if let path = unitPaths[unit] { return done(path) }
        do {
            try bus.call(destination: Self.destination, path: Self.managerPath, interface: Self.managerInterface,
                         member: "LoadUnit", [.string(unit)]) { [weak self] result in
                if case .success(let values) = result, let path = values.first?.objectPath {
                    self?.unitPaths[unit] = path
                    done(path)
                } else {
                    done(nil)
                }
            }
        } catch {
            done(nil)
        }
    }

    // MARK: Watching

    /// Calls `onChange(unit, activeState)` on the loop thread whenever the
    /// ActiveState of one of `units` changes, from the unit objects'
    /// PropertiesChanged signals (this subscribes to systemd). The state at the
    /// time of the call is read first and is not reported. Watching a unit again
    /// replaces its handler; `unwatch` ends it.
    ///
    /// `onAnyChange(unit)`, if given, is called for every change systemd signals on the unit's
    /// Unit or Service interface (its restarts and result too), after `onChange`.
    public func watch(
        _ units: [String], onChange: @escaping (String, String) -> Void, onAnyChange: ((String) -> Void)? = nil
    ) throws {
        var added: [String: Watch] = [:]
        for unit in units {
            let path = try ObjectPath(Self.unitObjectPath(unit))
            let w = Watch(path: path, onChange: onChange)
            let rule = "type='signal',sender='org.freedesktop.systemd1',path='\(path.rawValue)',"
                + "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"
            w.match = try bus.addMatch(rule) { [weak self, weak w] signal in
                guard let self, let w else { return }
                if signal.arguments.first?.string == Self.unitInterface.rawValue { self.propertiesChanged(unit, w, signal) }
                onAnyChange?(unit)
            }
            added[unit] = w
        }
        for (unit, w) in added {
            watches[unit]?.match?.cancel()
            watches[unit] = w
            readActiveState(w.path) { [weak w] state in
                // Seed only: a signal that arrived meanwhile is newer.
                if let w, w.state == nil, state != "unknown" { w.state = state }
            }
        }
        ensureSubscribed { _ in }
    }

    /// Stops watching `units`.
    public func unwatch(_ units: [String]) {
        for unit in units { watches.removeValue(forKey: unit)?.match?.cancel() }
    }

    private func propertiesChanged(_ unit: String, _ w: Watch, _ signal: SignalMessage) {
        guard signal.arguments.count >= 3, signal.arguments[0].string == Self.unitInterface.rawValue else { return }
        if let changed = signal.arguments[1].stringKeyedDictionary,
           let state = (changed["ActiveState"]?.variant ?? changed["ActiveState"])?.string {
            w.update(unit, state)
        } else if let invalidated = signal.arguments[2].array?.compactMap(\.string),
                  invalidated.contains("ActiveState") {
            readActiveState(w.path) { [weak w] state in
                if let w, state != "unknown" { w.update(unit, state) }
            }
        }
    }

    /// The object path systemd gives a unit: its name with every byte other than
    /// [A-Za-z0-9] (and a leading digit) escaped as _xx (bus_label_escape).
    static func unitObjectPath(_ unit: String) -> String {
        let hex = Array("0123456789abcdef")
        var label = ""
        for (i, byte) in unit.utf8.enumerated() {
            let isAlpha = (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            let isDigit = byte >= 0x30 && byte <= 0x39
            if isAlpha || (isDigit && i > 0) {
                label.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                label.append("_")
                label.append(hex[Int(byte >> 4)])
                label.append(hex[Int(byte & 0xF)])
            }
        }
        return "/org/freedesktop/systemd1/unit/" + (label.isEmpty ? "_" : label)
    }

    private static func text(_ d: Duration) -> String {
        let ms = d.wholeMilliseconds
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}

/// One start or stop job in progress.
private final class JobOperation {
    let id: Int
    let unit: String
    let verb: String
    var job: String?
    var timer: TimerSource?
    var call: PendingCall?
    private var completion: ((Result<Void, UnitError>) -> Void)?

    init(id: Int, unit: String, verb: String, completion: @escaping (Result<Void, UnitError>) -> Void) {
        self.id = id
        self.unit = unit
        self.verb = verb
        self.completion = completion
    }

    var isFinished: Bool { completion == nil }

    func finish(_ result: Result<Void, UnitError>) {
        guard let completion else { return }
        abandon()
        completion(result)
    }

    /// Releases the timer and the call without reporting.
    func abandon() {
        completion = nil
        timer?.cancel()
        timer = nil
        call?.cancel()
        call = nil
    }
}

/// A watched unit.
private final class Watch {
    let path: ObjectPath
    let onChange: (String, String) -> Void
    var match: Subscription?
    var state: String?

    init(path: ObjectPath, onChange: @escaping (String, String) -> Void) {
        self.path = path
        self.onChange = onChange
    }

    func update(_ unit: String, _ new: String) {
        guard new != state else { return }
        state = new
        onChange(unit, new)
    }
}
