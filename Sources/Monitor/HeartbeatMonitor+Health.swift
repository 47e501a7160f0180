// Service health, seen from kusu-hbd: it decides, the effector observes and acts.
//
// - Observations: the units as systemd reports them and the database's health query, both
//   from the effector (its signals, between polls); the `[[checks]]`, probed here while this
//   node is active (CheckProbe, unprivileged).
// - ClusterCore.ServiceHealth (pure) counts failures, says which resource this node gave up
//   and which unit to start again; FailoverPolicy.serviceFaultHandover decides whether to
//   hand over. The handover is a switchover (release, stop the database at a final LSN, the
//   standby takes over once it replayed it); when the database itself does not answer it is
//   killed instead (KillDatabase) and the standby, which the primary waited for on every
//   commit, takes over without the final LSN.
// - What this node gave up goes out in every heartbeat, so the peer does not hand it back.
// - Maintenance suspends the actions (restarts, handovers), not the observations.
import ClusterAPI
import ClusterCore
import DBusKit
import Logging
import SystemSupport

/// One `[[checks]]` entry while this node is active: its schedule and the probe under way.
final class CheckRunner {
    let check: HealthCheck
    var timer: TimerSource?
    var probe: CheckProbe?

    init(check: HealthCheck) { self.check = check }

    func stop() {
        timer?.cancel()
        timer = nil
        probe?.cancel()
        probe = nil
    }
}

/// One resource as the Resources property shows it (a(sssutbs)).
struct ResourceEntry: Equatable {
    var name: String
    var kind: String
    var state: String
    var failures: UInt32
    var lastFailureUSec: UInt64
    var failedOnPeer: Bool
    var detail: String
}

extension HeartbeatMonitor {
    var healthNow: MonotonicInstant { MonotonicInstant(loop.now) }

    /// The health machine's mode for this node's role.
    var healthMode: ServiceHealth.Mode {
        switch role {
        case .standby: .standby
        case .takingOver, .failed: .starting
        case .active: .serving
        case .releasing: .stopping
        }
    }

    // MARK: Observations

    /// The role changed: the machine's mode follows, and the checks run only while active.
    func healthRoleChanged() {
        applyHealth(health.setMode(healthMode, at: healthNow))
        if role == .active { startChecks() } else { stopChecks() }
    }

    /// The effector's units and database health, as last read.
    func observeEffectorHealth() {
        let now = healthNow
        var events: [ServiceHealth.Event] = []
        for unit in configuration.units {
            events += health.observe(unit: unit, effector.reachable ? effector.units?[unit] : nil, at: now)
        }
        events += health.observe(database: effector.reachable ? effector.databaseHealth : nil, at: now)
        applyHealth(events)
    }

    /// Logs what happened, publishes, decides and recovers.
    func applyHealth(_ events: [ServiceHealth.Event]) {
        for event in events { log(event) }
        publishResources()
        evaluateServiceFault()
        armHealthTimer()
    }

    func armHealthTimer() {
        let next = health.nextDeadline(after: healthNow)?.sinceOrigin ?? (loop.now + .seconds(3600))
        if let healthTimer {
            healthTimer.reschedule(at: next)
        } else {
            healthTimer = try? loop.addTimer(at: next) { [unowned self] in
                applyHealth(health.advance(to: healthNow))
            }
        }
    }

    func log(_ event: ServiceHealth.Event) {
        switch event {
        case .failure(let resource, let count, let reason):
            lastFailureUSec[resource] = wallClockMicroseconds()
            logger.warning(
                "resource failed",
                metadata: [
                    "resource.name": "\(resource)", "resource.failures": "\(count)", "reason": "\(reason)",
                    "node.role": "\(role.rawValue)", "message.id": "\(MessageID.resourceFailed)",
                ])
        case .gaveUp(let resource, let reason):
            logger.error(
                "resource given up on this node",
                metadata: ["resource.name": "\(resource)", "reason": "\(reason)", "message.id": "\(MessageID.resourceGivenUp)"])
        case .recovered(let resource):
            logger.notice("resource healthy again", metadata: ["resource.name": "\(resource)", "message.id": "\(MessageID.resourceRecovered)"])
        case .expired(let resource):
            logger.notice("resource failures expired (failure_timeout_s)", metadata: ["resource.name": "\(resource)"])
        }
    }

    // MARK: Checks

    func startChecks() {
        guard checkRunners.isEmpty else { return }
        for check in configuration.checks {
            let runner = CheckRunner(check: check)
            // The first probe one interval after the takeover: the services have just started.
            runner.timer = try? loop.addTimer(at: loop.now + check.interval) { [unowned self, unowned runner] in runCheck(runner) }
            checkRunners.append(runner)
        }
    }

    func stopChecks() {
        for runner in checkRunners { runner.stop() }
        checkRunners = []
    }

    func runCheck(_ runner: CheckRunner) {
        runner.timer?.reschedule(at: loop.now + runner.check.interval)
        guard runner.probe == nil else { return }  // the last one runs on (bounded by its timeout)
        runner.probe = CheckProbe.start(runner.check, loop: loop) { [unowned self, unowned runner] result in
            runner.probe = nil
            guard role == .active else { return }
            switch result {
            case .success: applyHealth(health.observe(check: runner.check.name, ok: true, detail: "", at: healthNow))
            case .failure(let failure):
                applyHealth(health.observe(check: runner.check.name, ok: false, detail: failure.message, at: healthNow))
            }
        }
    }

    // MARK: Deciding

    /// The active node gave a resource up: hand over if a healthy standby can take the service
    /// without loss, else recover here (a refusal is logged once per reason).
    func evaluateServiceFault() {
        let now = healthNow
        guard role == .active, handoverLSN == nil, handoverSynchronous == nil, switchoverCall == nil else { return }
        guard let cause = health.handoverCause(at: now) else {
            lastServiceFaultRefusal = nil
            return recoverUnits(at: now)
        }
        switch serviceFaultVerdict(cause: cause.resource) {
        case .proceed:
            // A local restart still running would make the release find the effector busy (and
            // the handover fail): hand over once it has ended (its completion evaluates again).
            guard !health.restarting, !effector.busy else { return }
            lastServiceFaultRefusal = nil
            logger.notice(
                "a resource failed here: handing over to the standby",
                metadata: [
                    "resource.name": "\(cause.resource)", "reason": "\(cause.reason)", "peer.name": "\(configuration.peerNode.name)",
                    "message.id": "\(MessageID.serviceFaultHandover)",
                ])
            beginHandover(call: nil, fault: (cause.resource, health.record(named: cause.resource)?.spec.kind == .database))
        case .refuse(let refusal):
            if refusal != lastServiceFaultRefusal {
                lastServiceFaultRefusal = refusal
                logger.warning(
                    "a resource failed here, but this node does not hand over",
                    metadata: [
                        "resource.name": "\(cause.resource)", "reason": "\(refusal)", "resource.failures": "\(cause.reason)",
                        "message.id": "\(MessageID.serviceFaultRefused)",
                    ])
            }
            recoverUnits(at: now)
        }
    }

    /// FailoverPolicy.serviceFaultHandover for a fault of `resource`, on what this node knows now.
    func serviceFaultVerdict(cause resource: String) -> SwitchVerdict {
        FailoverPolicy.serviceFaultHandover(
            switchingInputs, enabled: configuration.health.handover,
            cause: (resource, health.record(named: resource)?.spec.kind == .database), peerReady: tracker.peerServiceReady,
            peerGaveUp: tracker.peerGaveUp, peerReachesTieBreaker: tracker.peerReachesTieBreaker,
            tieBreakersConfigured: !configuration.cluster.tieBreakers.isEmpty, peerHasEveryCommit: peerHasEveryCommit,
            standbyRefusal: handoverRefusal)
    }

    /// The ServiceFaultReadiness property and Preflight("service-fault"): would a handover for a
    /// failed resource go ahead now — for the resource given up, or else for a unit or check.
    var serviceFaultReadiness: (ready: Bool, reason: String) {
        let resource = health.handoverCause(at: healthNow)?.resource
            ?? health.records.first(where: { $0.spec.kind != .database })?.spec.name ?? "database"
        switch serviceFaultVerdict(cause: resource) {
        case .proceed: return (true, "")
        case .refuse(let refusal): return (false, refusal.description)
        }
    }

    /// Local recovery: a stopped or failed unit on the active node is started again (StartUnits
    /// starts every configured unit; the running ones are left alone). Not in maintenance.
    func recoverUnits(at now: MonotonicInstant) {
        guard role == .active, !maintenance, !effector.busy, let due = health.restartDue(at: now) else { return }
        health.restartBegan(at: now)
        logger.notice("starting the units again", metadata: ["resource.name": "\(due.unit)", "reason": "\(due.reason)"])
        callEffector(Effector1.Method.startUnits, timeout: .seconds(300)) { [unowned self] result in
            health.restartEnded()
            if case .failure(let error) = result {
                logger.warning("cannot start the units again", metadata: ["resource.name": "\(due.unit)", "error": "\(error.message)"])
            }
            armHealthTimer()
            evaluateServiceFault()   // a handover held back by this restart goes ahead now
        }
    }

    // MARK: Readiness and the bus

    /// Whether this node's own copy of the service could serve, and why not: said in every
    /// heartbeat (a standby whose database answers and streams and whose units systemd can
    /// start; an active node that gave nothing up).
    var serviceReadiness: (ready: Bool, reason: String) {
        switch role {
        case .active:
            let given = health.givenUp(at: healthNow)
            return given.isEmpty ? (true, "") : (false, "this node gave up \(given.joined(separator: ", "))")
        case .standby:
            guard effector.reachable else { return (false, "kusu-effectord does not answer") }
            for unit in configuration.units {
                guard let observation = effector.units?[unit] else { return (false, "\(unit) is not reported by kusu-effectord") }
                guard observation.startable else {
                    return (false, "\(unit) could not start here: systemd says its unit is \(observation.loadState)")
                }
            }
            if configuration.database != nil {
                if let health = effector.databaseHealth, !health.answering {
                    return (false, "the database does not answer: \(health.detail)")
                }
                guard effector.databaseRole == "standby" else {
                    return (false, "the database is \(effector.databaseRole ?? "unknown"), not a standby")
                }
                guard effector.replicationState == "streaming" else { return (false, "the database does not stream from the peer") }
            }
            return (true, "")
        default:
            return (false, "this node is \(role.rawValue)")
        }
    }

    /// The Resources property: every resource, its state here, failures, and whether the peer gave it up.
    var resourceEntries: [ResourceEntry] {
        let now = healthNow
        return health.records.map { record in
            let state = health.state(of: record, at: now)
            let count = health.failureCount(record, at: now)
            // (Stamped when the failure was counted: a value computed anew each time would differ
            // by microseconds and signal a change at every heartbeat.)
            let lastFailure = count == 0 ? 0 : lastFailureUSec[record.spec.name] ?? 0
            let detail: String
            switch state {
            case .failed: detail = health.describeFailures(record, at: now)
            case .unhealthy: detail = record.reason
            case .unknown: detail = "not reported by kusu-effectord"
            case .healthy, .idle:
                detail = count == 0 ? "" : health.describeFailures(record, at: now)
            }
            return ResourceEntry(
                name: record.spec.name, kind: record.spec.kind.rawValue, state: state.rawValue, failures: UInt32(clamping: count),
                lastFailureUSec: lastFailure, failedOnPeer: tracker.peerGaveUp.contains(record.spec.name), detail: detail)
        }
    }

    /// Signals Resources (and ServiceReady) when they changed.
    func publishResources() {
        let entries = resourceEntries
        if entries != lastResources {
            lastResources = entries
            changed(Heartbeat1.Property.resources)
        }
        let ready = serviceReadiness
        if ready.ready != lastServiceReady.ready || ready.reason != lastServiceReady.reason {
            lastServiceReady = ready
            changed(Heartbeat1.Property.serviceReady)
        }
        if tracker.peerServiceReady != lastPeerServiceReady {
            lastPeerServiceReady = tracker.peerServiceReady
            changed(Heartbeat1.Property.peerServiceReady)
        }
    }

    /// How long a cleanup is told to the peer in the heartbeats.
    static let cleanupAnnouncement = Duration.seconds(10)

    /// CleanupResource(name), authorised: forgets the failures of one resource ("" = all) here,
    /// and tells the peer to do the same (in the heartbeats, for a while).
    func cleanupResource(_ call: MethodInvocation, _ name: String) {
        guard let cleared = health.cleanup(name.isEmpty ? nil : name) else {
            return call.fail(.invalidArgs("no resource named '\(name)'"))
        }
        logger.notice(
            "resource failures cleaned up",
            metadata: ["resource.name": "\(cleared.joined(separator: ", "))", "message.id": "\(MessageID.resourceCleanup)"])
        cleanupAnnouncement = (ResourceCleanup(id: wallClockMicroseconds(), resource: name), loop.now + Self.cleanupAnnouncement)
        sendHeartbeats(rescheduling: false)
        call.reply()
        observeEffectorHealth()  // judged again from what is known now
    }

    /// The peer's operator cleaned up failures: forget the same here (a name unknown here is
    /// ignored; only the in-memory failure counts change).
    func peerAskedForCleanup(_ cleanup: ResourceCleanup) {
        guard let cleared = health.cleanup(cleanup.resource.isEmpty ? nil : cleanup.resource) else { return }
        logger.notice(
            "resource failures cleaned up, as the peer asked",
            metadata: [
                "resource.name": "\(cleared.joined(separator: ", "))", "peer.name": "\(configuration.peerNode.name)",
                "message.id": "\(MessageID.resourceCleanup)",
            ])
        observeEffectorHealth()
    }

    /// Whether `name` names a resource ("" = all): validated before polkit is asked.
    func isResource(_ name: String) -> Bool {
        name.isEmpty || health.records.contains { $0.spec.name == name }
    }
}
