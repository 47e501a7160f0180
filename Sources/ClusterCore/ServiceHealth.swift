/// The health of what a node serves, as a pure state machine: the KUSU units (as systemd
/// reports them through the effector), the database (the effector's health query) and the
/// `[[checks]]` (kusu-hbd's probes). The shell feeds it observations and the time; it counts
/// failures, says which resource this node has given up, and which unit to start again.
///
/// The policy, as Pacemaker's `migration-threshold` and `failure-timeout`:
/// - A **failure** of a unit is an automatic restart by systemd (its `NRestarts` grew) or its
///   entry into `failed`; of the database, the start of a time in which it answers no query for
///   `database_timeout_ms`; of a check, `failures` consecutive failed probes.
/// - Failures are counted while the node serves (taking over, active, or failed in a
///   takeover), within the last `failure_timeout` (a sliding window; nil: until cleaned up).
/// - A resource is **given up** on this node once its failures in the window reach its
///   threshold: `migration_threshold` for units, which systemd and kusu-ha restart here
///   first; 1 for the database and for checks, which have no local recovery. The shell then
///   hands over to a healthy standby; the node advertises what it gave up in its heartbeats,
///   so the peer does not hand it back (no ping-pong) until the failures expire or are
///   cleaned up.
/// - **Local recovery**: on the active node, a unit that is stopped or `failed` (and not
///   being restarted by systemd) is started again, at once while it has not been given up,
///   then with a backoff of 1 s doubling to 60 s (the service is better up here than down).
///
/// No clocks and no I/O: every instant is passed in (`MonotonicInstant`), so it is tested
/// with a virtual clock.
public struct ServiceHealth: Sendable {
    /// What the node is doing with the service.
    public enum Mode: Sendable, Equatable {
        /// Standby: nothing is expected to run here (the database runs as a standby).
        case standby
        /// Taking over (or failed while taking over): failures count, nothing is restarted.
        case starting
        /// Active: failures count, stopped units are started again.
        case serving
        /// Releasing: units stop on purpose; nothing counts.
        case stopping

        var counts: Bool { self == .starting || self == .serving }
    }

    /// A resource's state in words (the `Resources` property).
    public enum State: String, Sendable, Equatable {
        /// Running and answering.
        case healthy
        /// Failing now, but not given up: being recovered here (or nothing can be done yet).
        case unhealthy
        /// Given up on this node: its failures in the window reached its threshold.
        case failed
        /// Not expected to run here (this node is standby).
        case idle
        /// Not observed (the effector does not report it, or has not yet).
        case unknown
    }

    public struct Policy: Sendable, Equatable {
        public var migrationThreshold: Int
        /// nil: failures are kept until cleaned up.
        public var failureTimeout: Duration?
        public var restartUnits: Bool
        /// The local restarts of a given-up unit wait this long, doubling each time, up to `maximumBackoff`.
        public var firstBackoff: Duration
        public var maximumBackoff: Duration

        public init(
            migrationThreshold: Int = 3, failureTimeout: Duration? = .seconds(600), restartUnits: Bool = true,
            firstBackoff: Duration = .seconds(1), maximumBackoff: Duration = .seconds(60)
        ) {
            self.migrationThreshold = migrationThreshold
            self.failureTimeout = failureTimeout
            self.restartUnits = restartUnits
            self.firstBackoff = firstBackoff
            self.maximumBackoff = maximumBackoff
        }

        public init(_ settings: HealthSettings) {
            self.init(
                migrationThreshold: settings.migrationThreshold, failureTimeout: settings.failureTimeout,
                restartUnits: settings.restartUnits)
        }
    }

    /// What is logged and signalled.
    public enum Event: Sendable, Equatable {
        /// A failure was counted; `count` failures are now in the window.
        case failure(resource: String, count: Int, reason: String)
        /// The resource is healthy again.
        case recovered(resource: String)
        /// The node gives the resource up (its failures reached the threshold).
        case gaveUp(resource: String, reason: String)
        /// Its failures expired (`failure_timeout`): the node no longer gives it up.
        case expired(resource: String)
    }

    /// One resource and what is known of it.
    public struct Record: Sendable, Equatable {
        public let spec: ResourceSpec
        /// When it turned unhealthy (nil: not unhealthy now).
        public fileprivate(set) var unhealthySince: MonotonicInstant?
        /// The current problem, or the last failure's (in words, naming the resource).
        public fileprivate(set) var reason = ""
        /// Whether it is observed now.
        public fileprivate(set) var observed = false
        /// The failures in the window, oldest first.
        public fileprivate(set) var failures: [MonotonicInstant] = []
        /// Units: the last observation (the baseline for the next), kept while unobserved.
        public fileprivate(set) var unit: UnitObservation?
        /// Units: when it was left failed with nothing to start it again (`restart_units` off):
        /// given up from then, for the window, as if its failures had reached the threshold.
        public fileprivate(set) var failedForGood: MonotonicInstant?
        /// Checks: failed probes in a row.
        fileprivate var failedProbes = 0
        /// Units: local restarts since it was last healthy, and when the next may start.
        fileprivate var restartAttempts = 0
        fileprivate var nextRestart: MonotonicInstant?

        init(spec: ResourceSpec) { self.spec = spec }
    }

    public let policy: Policy
    public private(set) var records: [Record]
    public private(set) var mode: Mode = .standby
    /// A local restart (StartUnits) is under way.
    public private(set) var restarting = false

    public init(resources: [ResourceSpec], policy: Policy) {
        self.policy = policy
        records = resources.map(Record.init)
    }

    // MARK: Queries

    /// The threshold of a resource: units are restarted here first; the database and checks
    /// have no local recovery.
    public func threshold(of spec: ResourceSpec) -> Int { spec.kind == .unit ? policy.migrationThreshold : 1 }

    /// The failures of `record` within the window at `now`.
    public func failureCount(_ record: Record, at now: MonotonicInstant) -> Int {
        guard let timeout = policy.failureTimeout else { return record.failures.count }
        return record.failures.count { now - $0 < timeout }
    }

    /// Whether this node has given the resource up: its failures reached its threshold, or it
    /// is a unit that failed for good here (systemd gave up, and `restart_units` is off).
    public func gaveUp(_ record: Record, at now: MonotonicInstant) -> Bool {
        if failureCount(record, at: now) >= threshold(of: record.spec) { return true }
        guard let since = record.failedForGood else { return false }
        return policy.failureTimeout.map { now - since < $0 } ?? true
    }

    public func state(of record: Record, at now: MonotonicInstant) -> State {
        if gaveUp(record, at: now) { return .failed }
        if record.unhealthySince != nil { return .unhealthy }
        if record.spec.kind != .database && !mode.counts { return .idle }
        if !record.observed { return .unknown }
        return .healthy
    }

    public func record(named name: String) -> Record? { records.first { $0.spec.name == name } }

    /// The resources this node has given up (said in heartbeats, so the peer does not hand them back).
    public func givenUp(at now: MonotonicInstant) -> [String] {
        records.filter { gaveUp($0, at: now) }.map(\.spec.name)
    }

    /// The first resource given up here, with the reason in words: the cause of a handover.
    public func handoverCause(at now: MonotonicInstant) -> (resource: String, reason: String)? {
        guard let record = records.first(where: { gaveUp($0, at: now) }) else { return nil }
        return (record.spec.name, describeFailures(record, at: now))
    }

    /// "nginx.service failed 3 times in 10 min (the last: start failed: exit-code)".
    public func describeFailures(_ record: Record, at now: MonotonicInstant) -> String {
        let count = failureCount(record, at: now)
        let times = count == 1 ? "once" : "\(count) times"
        let window = policy.failureTimeout.map { " in \(Self.describe($0))" } ?? ""
        let last = record.reason.isEmpty ? "" : " (the last: \(record.reason))"
        return "\(record.spec.name) failed \(times)\(window)\(last)"
    }

    /// The unit to start again now (local recovery), if any: on the active node, a unit that
    /// is stopped or failed and not being restarted by systemd, when no restart is under way
    /// and its backoff has passed.
    public func restartDue(at now: MonotonicInstant) -> (unit: String, reason: String)? {
        guard mode == .serving, policy.restartUnits, !restarting else { return nil }
        for record in records where record.spec.kind == .unit && record.unhealthySince != nil {
            guard let unit = record.unit, unit.activeState == "failed" || unit.activeState == "inactive" else { continue }
            if let next = record.nextRestart, now < next { continue }
            return (record.spec.name, record.reason)
        }
        return nil
    }

    /// The next instant at which something changes without an observation: a failure leaves
    /// the window, or a restart's backoff ends.
    public func nextDeadline(after now: MonotonicInstant) -> MonotonicInstant? {
        var candidates: [MonotonicInstant] = []
        for record in records {
            if let timeout = policy.failureTimeout, let oldest = record.failures.first { candidates.append(oldest + timeout) }
            if let timeout = policy.failureTimeout, let since = record.failedForGood { candidates.append(since + timeout) }
            if let next = record.nextRestart, record.unhealthySince != nil { candidates.append(next) }
        }
        return candidates.filter { $0 > now }.min()
    }

    // MARK: Events

    /// The node's part changed (its role): when it stops serving, units and checks are idle
    /// (their failures stay counted); when it starts serving, stopped units count as unhealthy.
    public mutating func setMode(_ new: Mode, at now: MonotonicInstant) -> [Event] {
        guard new != mode else { return [] }
        mode = new
        var events: [Event] = []
        for index in records.indices {
            if records[index].spec.kind == .database {
                // The service's database is judged afresh: a standby's trouble is not the service's.
                if new.counts { records[index].unhealthySince = nil }
                continue
            }
            switch new {
            case .standby, .stopping:
                records[index].unhealthySince = nil
                records[index].failedProbes = 0
                records[index].restartAttempts = 0
                records[index].nextRestart = nil
            case .starting, .serving:
                if records[index].spec.kind == .unit, let unit = records[index].unit {
                    events += evaluate(unit: index, unit, failuresNow: 0, why: "", at: now)
                }
            }
        }
        if !new.counts { restarting = false }
        return events
    }

    /// systemd's view of a unit (nil: not reported now, e.g. the effector is restarting).
    public mutating func observe(unit name: String, _ observation: UnitObservation?, at now: MonotonicInstant) -> [Event] {
        guard let index = index(of: name, kind: .unit) else { return [] }
        guard let observation else {
            records[index].observed = false
            return []
        }
        let previous = records[index].unit
        records[index].unit = observation
        records[index].observed = true
        var count = 0
        var why = ""
        if mode.counts {
            if let previous, observation.restarts > previous.restarts {
                count += Int(observation.restarts - previous.restarts)
                why = "systemd restarted it after a failure (\(observation.result))"
            }
            let newlyFailed = observation.activeState == "failed"
                && (previous.map { $0.activeState != "failed" || $0.inactiveSince != observation.inactiveSince } ?? (mode == .serving))
            if newlyFailed {
                count += 1
                why = "it failed (\(observation.result))"
            }
        }
        return evaluate(unit: index, observation, failuresNow: count, why: why, at: now)
    }

    /// The effector's verdict on the database (nil: not known now).
    public mutating func observe(database observation: DatabaseObservation?, at now: MonotonicInstant) -> [Event] {
        guard let index = index(of: "database", kind: .database) else { return [] }
        guard let observation else {
            records[index].observed = false
            return []
        }
        records[index].observed = true
        if observation.answering { return healthy(index) }
        let reason = "the database does not answer: \(observation.detail)"
        records[index].reason = reason
        guard records[index].unhealthySince == nil else { return [] }
        records[index].unhealthySince = now
        // Only the primary of the active node is the service; a standby's trouble is its readiness.
        return mode == .serving ? countFailures(index, 1, reason, at: now) : []
    }

    /// One probe of a check (the shell runs checks only while this node is active).
    public mutating func observe(check name: String, ok: Bool, detail: String, at now: MonotonicInstant) -> [Event] {
        guard let index = index(of: name, kind: .check), mode.counts else { return [] }
        records[index].observed = true
        if ok {
            records[index].failedProbes = 0
            return healthy(index)
        }
        records[index].failedProbes += 1
        guard records[index].failedProbes >= records[index].spec.probesToFail else { return [] }
        let reason = "\(name): \(detail)"
        records[index].reason = reason
        guard records[index].unhealthySince == nil else { return [] }
        records[index].unhealthySince = now
        return countFailures(index, 1, reason, at: now)
    }

    /// Time passes: failures leave the window.
    public mutating func advance(to now: MonotonicInstant) -> [Event] {
        guard let timeout = policy.failureTimeout else { return [] }
        var events: [Event] = []
        for index in records.indices where !records[index].failures.isEmpty || records[index].failedForGood != nil {
            let before = gaveUp(records[index], at: now - .nanoseconds(1))
            records[index].failures.removeAll { now - $0 >= timeout }
            if let since = records[index].failedForGood, now - since >= timeout { records[index].failedForGood = nil }
            if before && !gaveUp(records[index], at: now) { events.append(.expired(resource: records[index].spec.name)) }
        }
        return events
    }

    /// `kusu-ha resource cleanup [NAME]`: forgets the failures of one resource (nil: of all);
    /// one still failing is counted again at its next observation. Returns the names cleared,
    /// or nil when `name` is not a resource.
    public mutating func cleanup(_ name: String?) -> [String]? {
        let indices = records.indices.filter { name == nil || records[$0].spec.name == name }
        guard !indices.isEmpty || name == nil else { return nil }
        for index in indices {
            records[index].failures = []
            records[index].failedForGood = nil
            records[index].restartAttempts = 0
            records[index].nextRestart = nil
            if records[index].spec.kind != .unit {
                // Probed again from scratch: a check or database still failing fails anew.
                records[index].unhealthySince = nil
                records[index].failedProbes = 0
            }
        }
        return indices.map { records[$0].spec.name }
    }

    /// A local restart (StartUnits) was started.
    public mutating func restartBegan(at now: MonotonicInstant) {
        restarting = true
        for index in records.indices where records[index].spec.kind == .unit && records[index].unhealthySince != nil {
            records[index].restartAttempts += 1
            // At once while not given up (systemd and kusu-ha recover it here); then back off. (Also
            // after `migration_threshold` restarts that did not keep it running, even if none
            // counted as a failure: a unit that exits cleanly at once.)
            if gaveUp(records[index], at: now) || records[index].restartAttempts > policy.migrationThreshold {
                let exponent = min(max(0, records[index].restartAttempts - policy.migrationThreshold), 16)
                let backoff = min(policy.firstBackoff * (1 << exponent), policy.maximumBackoff)
                records[index].nextRestart = now + backoff
            } else {
                records[index].nextRestart = nil
            }
        }
    }

    /// The local restart finished (its effect is seen in the units' next observations).
    public mutating func restartEnded() { restarting = false }

    // MARK: Internals

    private func index(of name: String, kind: ResourceSpec.Kind) -> Int? {
        records.firstIndex { $0.spec.name == name && $0.spec.kind == kind }
    }

    /// A unit's condition from systemd's view, counting `failuresNow` failures first.
    private mutating func evaluate(unit index: Int, _ unit: UnitObservation, failuresNow: Int, why: String, at now: MonotonicInstant) -> [Event] {
        let name = records[index].spec.name
        let wasGivenUp = gaveUp(records[index], at: now)
        var events: [Event] = []
        if failuresNow > 0 { events += countFailures(index, failuresNow, "\(name): \(why)", at: now) }
        let down: String? =
            switch unit.activeState {
            case "failed": "failed (\(unit.result))"
            case "inactive" where mode == .serving: "is not running"
            case "activating" where unit.subState == "auto-restart": "is being restarted by systemd (\(unit.result))"
            default: nil
            }
        // Starting, stopping or reloading: an unhealthy unit is judged once it settles. (Being
        // started again is not "healthy again" yet: that would reset its restart backoff at
        // every attempt and restart a given-up unit in a tight loop.)
        let settling = ["activating", "deactivating", "reloading"].contains(unit.activeState)
        if down == nil, settling, records[index].unhealthySince != nil { return events }
        guard mode.counts, let down else { return events + healthy(index) }
        records[index].reason = "\(name) \(down)"
        if records[index].unhealthySince == nil { records[index].unhealthySince = now }
        // Failed for good, with nothing here to start it again (restart_units = false).
        if unit.activeState == "failed" && !policy.restartUnits && !wasGivenUp {
            records[index].failedForGood = now
            if !events.contains(where: { if case .gaveUp = $0 { true } else { false } }) {
                events.append(.gaveUp(resource: name, reason: "\(records[index].reason), and restart_units is off"))
            }
        }
        return events
    }

    private mutating func healthy(_ index: Int) -> [Event] {
        guard records[index].unhealthySince != nil else { return [] }
        records[index].unhealthySince = nil
        records[index].restartAttempts = 0
        records[index].nextRestart = nil
        return [.recovered(resource: records[index].spec.name)]
    }

    private mutating func countFailures(_ index: Int, _ count: Int, _ reason: String, at now: MonotonicInstant) -> [Event] {
        let wasGivenUp = gaveUp(records[index], at: now)
        records[index].failures += Array(repeating: now, count: count)
        // Bounded: only the threshold's worth matters, plus a margin for the count shown.
        if records[index].failures.count > 1000 { records[index].failures.removeFirst(records[index].failures.count - 1000) }
        records[index].reason = reason
        let name = records[index].spec.name
        var events: [Event] = [.failure(resource: name, count: failureCount(records[index], at: now), reason: reason)]
        if !wasGivenUp && gaveUp(records[index], at: now) {
            events.append(.gaveUp(resource: name, reason: describeFailures(records[index], at: now)))
        }
        return events
    }

    /// "10 min", "90 s", "2 h".
    static func describe(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        if seconds % 3600 == 0 && seconds >= 3600 { return "\(seconds / 3600) h" }
        if seconds % 60 == 0 && seconds >= 60 { return "\(seconds / 60) min" }
        return "\(seconds) s"
    }
}

/// One resource a node serves.
public struct ResourceSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case database, unit, check
    }

    public var name: String
    public var kind: Kind
    /// Checks: failed probes in a row before the check counts as failed (1 otherwise).
    public var probesToFail: Int

    public init(name: String, kind: Kind, probesToFail: Int = 1) {
        self.name = name
        self.kind = kind
        self.probesToFail = probesToFail
    }

    /// Every resource of a configuration: the database (if any), the units in start order,
    /// then the checks.
    public static func all(in configuration: Configuration) -> [ResourceSpec] {
        (configuration.database == nil ? [] : [ResourceSpec(name: "database", kind: .database)])
            + configuration.units.map { ResourceSpec(name: $0, kind: .unit) }
            + configuration.checks.map { ResourceSpec(name: $0.name, kind: .check, probesToFail: $0.failures) }
    }
}

/// What systemd says about one unit (the effector's `UnitStates`).
public struct UnitObservation: Sendable, Equatable {
    /// loaded, not-found, bad-setting, error, masked.
    public var loadState: String
    /// active, reloading, inactive, failed, activating, deactivating.
    public var activeState: String
    /// running, exited, dead, failed, auto-restart, start-pre, ...
    public var subState: String
    /// The service's last result: success, exit-code, signal, core-dump, timeout, start-limit-hit, ...
    public var result: String
    /// NRestarts: automatic restarts by systemd since the unit was last started by hand.
    public var restarts: UInt32
    /// InactiveEnterTimestampMonotonic: changes each time the unit enters inactive or failed.
    public var inactiveSince: UInt64

    public init(
        loadState: String = "loaded", activeState: String, subState: String = "", result: String = "success",
        restarts: UInt32 = 0, inactiveSince: UInt64 = 0
    ) {
        self.loadState = loadState
        self.activeState = activeState
        self.subState = subState
        self.result = result
        self.restarts = restarts
        self.inactiveSince = inactiveSince
    }

    /// systemd can start it: its unit file is loaded (not missing, masked or broken).
    public var startable: Bool { loadState == "loaded" }
}

/// The effector's verdict on the database (its `DatabaseHealth`).
public struct DatabaseObservation: Sendable, Equatable {
    /// It answered a query within the configured time.
    public var answering: Bool
    /// Why not, in words ("" when answering).
    public var detail: String

    public init(answering: Bool, detail: String = "") {
        self.answering = answering
        self.detail = detail
    }
}
