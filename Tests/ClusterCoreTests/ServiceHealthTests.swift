import ClusterCore
import Testing

/// ServiceHealth on a virtual clock: what counts as a failure, when a resource is given up,
/// what is restarted, when failures expire.
@Suite struct ServiceHealthTests {
    static let resources = [
        ResourceSpec(name: "database", kind: .database),
        ResourceSpec(name: "nginx.service", kind: .unit),
        ResourceSpec(name: "dnsmasq.service", kind: .unit),
        ResourceSpec(name: "repository", kind: .check, probesToFail: 2),
    ]

    func machine(threshold: Int = 3, timeout: Duration? = .seconds(600), restart: Bool = true) -> ServiceHealth {
        ServiceHealth(resources: Self.resources, policy: .init(migrationThreshold: threshold, failureTimeout: timeout, restartUnits: restart))
    }

    let active = UnitObservation(activeState: "active", subState: "running")

    /// A machine serving, with both units seen active.
    func serving(threshold: Int = 3, timeout: Duration? = .seconds(600), restart: Bool = true) -> ServiceHealth {
        var health = machine(threshold: threshold, timeout: timeout, restart: restart)
        _ = health.observe(unit: "nginx.service", active, at: .ms(0))
        _ = health.observe(unit: "dnsmasq.service", active, at: .ms(0))
        _ = health.observe(database: DatabaseObservation(answering: true), at: .ms(0))
        _ = health.setMode(.starting, at: .ms(0))
        _ = health.setMode(.serving, at: .ms(100))
        return health
    }

    func state(_ health: ServiceHealth, _ name: String, at ms: Int) -> ServiceHealth.State {
        health.state(of: health.record(named: name)!, at: .ms(ms))
    }

    // MARK: Units

    @Test func aRestartBySystemdIsOneFailureAndNoHandover() {
        var health = serving()
        let events = health.observe(unit: "dnsmasq.service", UnitObservation(activeState: "active", subState: "running", result: "signal", restarts: 1), at: .ms(1000))
        #expect(events == [.failure(resource: "dnsmasq.service", count: 1, reason: "dnsmasq.service: systemd restarted it after a failure (signal)")])
        #expect(state(health, "dnsmasq.service", at: 1000) == .healthy)
        #expect(health.handoverCause(at: .ms(1000)) == nil)
        #expect(health.restartDue(at: .ms(1000)) == nil)
        #expect(health.givenUp(at: .ms(1000)).isEmpty)
    }

    @Test func restartsPastTheThresholdGiveTheUnitUp() {
        var health = serving()
        var events: [ServiceHealth.Event] = []
        for restarts in 1...3 {
            // Between restarts systemd reports the auto-restart state: unhealthy, being restarted.
            events += health.observe(
                unit: "dnsmasq.service", UnitObservation(activeState: "activating", subState: "auto-restart", result: "signal", restarts: UInt32(restarts - 1)),
                at: .ms(1000 * restarts))
            #expect(state(health, "dnsmasq.service", at: 1000 * restarts) == .unhealthy)
            #expect(health.restartDue(at: .ms(1000 * restarts)) == nil, "systemd restarts it: kusu-ha does not")
            events += health.observe(
                unit: "dnsmasq.service", UnitObservation(activeState: "active", subState: "running", result: "signal", restarts: UInt32(restarts)),
                at: .ms(1000 * restarts + 100))
        }
        #expect(events.filter { if case .failure = $0 { true } else { false } }.count == 3)
        #expect(events.contains(.gaveUp(resource: "dnsmasq.service", reason: "dnsmasq.service failed 3 times in 10 min (the last: dnsmasq.service: systemd restarted it after a failure (signal))")))
        #expect(state(health, "dnsmasq.service", at: 3200) == .failed)
        #expect(health.handoverCause(at: .ms(3200))?.resource == "dnsmasq.service")
        #expect(health.givenUp(at: .ms(3200)) == ["dnsmasq.service"])
    }

    @Test func aFailedUnitIsRestartedAtOnceUntilGivenUpThenWithBackoff() {
        var health = serving()
        var stamp: UInt64 = 10
        func fail(at ms: Int) -> [ServiceHealth.Event] {
            stamp += 1
            return health.observe(unit: "nginx.service", UnitObservation(activeState: "failed", subState: "failed", result: "exit-code", inactiveSince: stamp), at: .ms(ms))
        }
        #expect(fail(at: 1000) == [.failure(resource: "nginx.service", count: 1, reason: "nginx.service: it failed (exit-code)")])
        #expect(state(health, "nginx.service", at: 1000) == .unhealthy)
        #expect(health.restartDue(at: .ms(1000))?.unit == "nginx.service")
        health.restartBegan(at: .ms(1000))
        #expect(health.restartDue(at: .ms(1000)) == nil, "one restart at a time")
        health.restartEnded()
        // The start failed: systemd reports it failed again (a new InactiveEnterTimestamp).
        #expect(fail(at: 1100).count == 1)
        #expect(health.restartDue(at: .ms(1100))?.unit == "nginx.service", "not given up: again at once")
        health.restartBegan(at: .ms(1100))
        health.restartEnded()
        let third = fail(at: 1200)
        #expect(third.contains { if case .gaveUp("nginx.service", _) = $0 { true } else { false } })
        #expect(health.handoverCause(at: .ms(1200))?.resource == "nginx.service")
        // Given up and still failed here (no handover possible): restarted with a backoff of 1 s, 2 s, ...
        #expect(health.restartDue(at: .ms(1200)) != nil)
        health.restartBegan(at: .ms(1200))
        health.restartEnded()
        #expect(health.restartDue(at: .ms(2199)) == nil)
        #expect(health.restartDue(at: .ms(2200)) != nil)
        health.restartBegan(at: .ms(2200))
        health.restartEnded()
        #expect(health.restartDue(at: .ms(4199)) == nil)
        #expect(health.restartDue(at: .ms(4200)) != nil)
        #expect(health.nextDeadline(after: .ms(2300)) == .ms(4200))
    }

    /// Each restart of a given-up unit passes through "activating": that is not "healthy
    /// again" (it would reset the backoff and restart it in a tight loop, keeping the effector
    /// busy when the handover comes). Only a unit that settles as active has recovered.
    @Test func aUnitBeingStartedAgainIsNotHealthyAgain() {
        var health = serving()
        var stamp: UInt64 = 10
        func fail(at ms: Int) -> [ServiceHealth.Event] {
            stamp += 1
            return health.observe(unit: "nginx.service", UnitObservation(activeState: "failed", subState: "failed", result: "exit-code", inactiveSince: stamp), at: .ms(ms))
        }
        let starting = UnitObservation(activeState: "activating", subState: "start-pre")
        for ms in [1000, 1100, 1200] {
            _ = fail(at: ms)
            health.restartBegan(at: .ms(ms))
            #expect(health.observe(unit: "nginx.service", starting, at: .ms(ms + 10)).isEmpty, "activating is not a recovery")
            health.restartEnded()
        }
        _ = fail(at: 1300)
        #expect(health.handoverCause(at: .ms(1300))?.resource == "nginx.service")
        health.restartBegan(at: .ms(1300))
        _ = health.observe(unit: "nginx.service", starting, at: .ms(1310))
        health.restartEnded()
        _ = fail(at: 1320)
        // The backoff holds through the attempt: no restart before it ends.
        #expect(health.restartDue(at: .ms(1330)) == nil)
        #expect(health.restartDue(at: .ms(3300)) != nil)
        // A unit that settles as active has recovered.
        #expect(health.observe(unit: "nginx.service", active, at: .ms(2400)) == [.recovered(resource: "nginx.service")])
    }

    @Test func theSameFailedStateSeenTwiceIsOneFailure() {
        var health = serving()
        let failed = UnitObservation(activeState: "failed", subState: "failed", result: "exit-code", inactiveSince: 77)
        #expect(health.observe(unit: "nginx.service", failed, at: .ms(1000)).count == 1)
        #expect(health.observe(unit: "nginx.service", failed, at: .ms(2000)).isEmpty)
        #expect(health.failureCount(health.record(named: "nginx.service")!, at: .ms(2000)) == 1)
    }

    @Test func aStoppedUnitOnTheActiveNodeIsRestartedButNotCountedAsAFailure() {
        var health = serving()
        let events = health.observe(unit: "nginx.service", UnitObservation(activeState: "inactive", subState: "dead", inactiveSince: 5), at: .ms(1000))
        #expect(events.isEmpty)
        #expect(state(health, "nginx.service", at: 1000) == .unhealthy)
        #expect(health.record(named: "nginx.service")?.reason == "nginx.service is not running")
        #expect(health.restartDue(at: .ms(1000))?.unit == "nginx.service")
        #expect(health.observe(unit: "nginx.service", active, at: .ms(1200)) == [.recovered(resource: "nginx.service")])
        #expect(health.restartDue(at: .ms(1200)) == nil)
    }

    @Test func restartsOfAUnitThatDoesNotStayUpBackOffEvenWithoutFailures() {
        var health = serving(threshold: 2)
        let stopped = UnitObservation(activeState: "inactive", subState: "dead")
        _ = health.observe(unit: "nginx.service", stopped, at: .ms(1000))
        for ms in [1000, 1100, 1200] {
            #expect(health.restartDue(at: .ms(ms)) != nil, "at \(ms)")
            health.restartBegan(at: .ms(ms))
            health.restartEnded()
        }
        #expect(health.restartDue(at: .ms(1300)) == nil, "past migration_threshold restarts: backoff")
    }

    @Test func noRestartWhenRestartUnitsIsOffOrNotServing() {
        var off = serving(restart: false)
        _ = off.observe(unit: "nginx.service", UnitObservation(activeState: "failed", result: "exit-code", inactiveSince: 1), at: .ms(1000))
        #expect(off.restartDue(at: .ms(1000)) == nil)
        var starting = machine()
        _ = starting.observe(unit: "nginx.service", UnitObservation(activeState: "inactive", inactiveSince: 1), at: .ms(0))
        _ = starting.setMode(.starting, at: .ms(0))
        _ = starting.observe(unit: "nginx.service", UnitObservation(activeState: "failed", result: "exit-code", inactiveSince: 2), at: .ms(1000))
        #expect(starting.restartDue(at: .ms(1000)) == nil)
        #expect(starting.failureCount(starting.record(named: "nginx.service")!, at: .ms(1000)) == 1, "failures during a takeover count")
    }

    @Test func withoutRestartUnitsAFailedUnitIsGivenUpAtOnce() {
        var health = serving(restart: false)
        let events = health.observe(unit: "nginx.service", UnitObservation(activeState: "failed", result: "exit-code", inactiveSince: 9), at: .ms(1000))
        #expect(events == [
            .failure(resource: "nginx.service", count: 1, reason: "nginx.service: it failed (exit-code)"),
            .gaveUp(resource: "nginx.service", reason: "nginx.service failed (exit-code), and restart_units is off"),
        ])
        #expect(health.handoverCause(at: .ms(1000))?.resource == "nginx.service")
        // Being restarted by systemd (its own Restart=) is not failed for good.
        var restarting = serving(restart: false)
        _ = restarting.observe(unit: "nginx.service", UnitObservation(activeState: "activating", subState: "auto-restart", result: "signal"), at: .ms(1000))
        #expect(restarting.handoverCause(at: .ms(1000)) == nil)
        // Given up for the window, even once stopped by the release (no ping-pong).
        _ = health.setMode(.stopping, at: .ms(1500))
        _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "inactive", inactiveSince: 10), at: .ms(1600))
        _ = health.setMode(.standby, at: .ms(1700))
        #expect(health.givenUp(at: .ms(1700)) == ["nginx.service"])
        #expect(health.advance(to: .ms(1000 + 600_000)) == [.expired(resource: "nginx.service")])
        #expect(health.givenUp(at: .ms(1000 + 600_000)).isEmpty)
    }

    @Test func onTheStandbyNothingCountsAndUnitsAreIdle() {
        var health = machine()
        let events = health.observe(unit: "nginx.service", UnitObservation(activeState: "failed", result: "exit-code", restarts: 4, inactiveSince: 3), at: .ms(10))
        #expect(events.isEmpty)
        #expect(state(health, "nginx.service", at: 10) == .idle)
        #expect(state(health, "repository", at: 10) == .idle)
        #expect(health.observe(check: "repository", ok: false, detail: "x", at: .ms(20)).isEmpty)
        #expect(health.restartDue(at: .ms(20)) == nil)
        #expect(health.handoverCause(at: .ms(20)) == nil)
    }

    @Test func unitsAreIdleAgainAfterTheReleaseButTheirFailuresStay() {
        var health = serving()
        for stamp: UInt64 in 1...3 {
            _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "failed", result: "exit-code", inactiveSince: stamp), at: .ms(1000 + Int(stamp)))
        }
        #expect(health.givenUp(at: .ms(1010)) == ["nginx.service"])
        _ = health.setMode(.stopping, at: .ms(1100))
        _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "inactive", inactiveSince: 9), at: .ms(1150))
        _ = health.setMode(.standby, at: .ms(1200))
        #expect(state(health, "nginx.service", at: 1200) == .failed, "still given up: the peer must not hand it back")
        #expect(health.record(named: "nginx.service")?.unhealthySince == nil)
        #expect(health.givenUp(at: .ms(1200)) == ["nginx.service"])
    }

    @Test func theEffectorAwayLeavesTheBaseline() {
        var health = serving()
        _ = health.observe(unit: "dnsmasq.service", UnitObservation(activeState: "active", restarts: 2), at: .ms(500))
        #expect(health.observe(unit: "dnsmasq.service", nil, at: .ms(600)).isEmpty)
        #expect(state(health, "dnsmasq.service", at: 600) == .unknown)
        // Back with the same counter: nothing new.
        let events = health.observe(unit: "dnsmasq.service", UnitObservation(activeState: "active", restarts: 2), at: .ms(700))
        #expect(events.isEmpty)
        #expect(health.failureCount(health.record(named: "dnsmasq.service")!, at: .ms(700)) == 2)
    }

    @Test func aCounterThatGoesDownIsANewBaseline() {
        var health = serving()
        _ = health.observe(unit: "dnsmasq.service", UnitObservation(activeState: "active", restarts: 2), at: .ms(500))
        // Started by hand (or by kusu-ha): systemd resets NRestarts.
        #expect(health.observe(unit: "dnsmasq.service", UnitObservation(activeState: "active", restarts: 0), at: .ms(600)).isEmpty)
        let events = health.observe(unit: "dnsmasq.service", UnitObservation(activeState: "active", restarts: 1), at: .ms(700))
        #expect(events.first == .failure(resource: "dnsmasq.service", count: 3, reason: "dnsmasq.service: systemd restarted it after a failure (success)"))
        #expect(health.failureCount(health.record(named: "dnsmasq.service")!, at: .ms(700)) == 3)
    }

    // MARK: Expiry and cleanup

    @Test func failuresLeaveTheWindowOneByOne() {
        var health = serving(threshold: 2, timeout: .seconds(60))
        _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "active", restarts: 1), at: .ms(1000))
        _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "active", restarts: 2), at: .ms(31_000))
        #expect(health.givenUp(at: .ms(31_000)) == ["nginx.service"])
        #expect(health.nextDeadline(after: .ms(31_000)) == .ms(61_000))
        #expect(health.advance(to: .ms(60_999)).isEmpty)
        #expect(health.advance(to: .ms(61_000)) == [.expired(resource: "nginx.service")])
        #expect(health.givenUp(at: .ms(61_000)).isEmpty)
        #expect(health.failureCount(health.record(named: "nginx.service")!, at: .ms(61_000)) == 1)
        #expect(health.advance(to: .ms(91_000)).isEmpty)
        #expect(health.failureCount(health.record(named: "nginx.service")!, at: .ms(91_000)) == 0)
        #expect(health.nextDeadline(after: .ms(91_000)) == nil)
    }

    @Test func withoutATimeoutOnlyCleanupForgets() {
        var health = serving(threshold: 1, timeout: nil)
        _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "active", restarts: 1), at: .ms(1000))
        #expect(health.advance(to: .ms(100_000_000)).isEmpty)
        #expect(health.givenUp(at: .ms(100_000_000)) == ["nginx.service"])
        #expect(health.cleanup("nginx.service") == ["nginx.service"])
        #expect(health.givenUp(at: .ms(100_000_000)).isEmpty)
        #expect(health.cleanup("nope.service") == nil)
        #expect(health.cleanup(nil)?.count == Self.resources.count)
    }

    @Test func aCheckStillFailingAfterCleanupFailsAnew() {
        var health = serving()
        _ = health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(1000))
        _ = health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(2000))
        #expect(health.givenUp(at: .ms(2000)) == ["repository"])
        _ = health.cleanup("repository")
        #expect(state(health, "repository", at: 2000) == .healthy)
        #expect(health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(3000)).isEmpty)
        let again = health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(4000))
        #expect(again.contains(.gaveUp(resource: "repository", reason: "repository failed once in 10 min (the last: repository: HTTP 503)")))
    }

    // MARK: Checks and the database

    @Test func aCheckFailsAfterItsProbesInARowAndIsGivenUpAtOnce() {
        var health = serving()
        #expect(health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(1000)).isEmpty)
        #expect(state(health, "repository", at: 1000) == .healthy)
        #expect(health.observe(check: "repository", ok: true, detail: "", at: .ms(2000)).isEmpty)
        #expect(health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(3000)).isEmpty, "the count starts again")
        let events = health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(4000))
        #expect(events.first == .failure(resource: "repository", count: 1, reason: "repository: HTTP 503"))
        #expect(events.contains { if case .gaveUp("repository", _) = $0 { true } else { false } })
        #expect(state(health, "repository", at: 4000) == .failed)
        #expect(health.observe(check: "repository", ok: false, detail: "HTTP 503", at: .ms(5000)).isEmpty, "one failure per episode")
        #expect(health.restartDue(at: .ms(5000)) == nil, "a check has no unit to restart")
    }

    @Test func aDatabaseThatStopsAnsweringIsGivenUpOnTheActiveNodeOnly() {
        var standby = machine()
        #expect(standby.observe(database: DatabaseObservation(answering: false, detail: "no answer within 3.0 s"), at: .ms(100)).isEmpty)
        #expect(state(standby, "database", at: 100) == .unhealthy, "shown, but a standby's database is its readiness, not the service")
        #expect(standby.handoverCause(at: .ms(100)) == nil)

        var health = serving()
        let events = health.observe(database: DatabaseObservation(answering: false, detail: "no answer within 3.0 s"), at: .ms(5000))
        #expect(events.first == .failure(resource: "database", count: 1, reason: "the database does not answer: no answer within 3.0 s"))
        #expect(health.handoverCause(at: .ms(5000))?.resource == "database")
        #expect(health.observe(database: DatabaseObservation(answering: false, detail: "refused"), at: .ms(6000)).isEmpty)
        #expect(health.observe(database: DatabaseObservation(answering: true), at: .ms(7000)) == [.recovered(resource: "database")])
        #expect(health.handoverCause(at: .ms(7000))?.resource == "database", "given up for the window: it may hang again")
        #expect(health.observe(database: nil, at: .ms(8000)).isEmpty)
    }

    @Test func aStandbysSickDatabaseIsJudgedAfreshOnceServing() {
        var health = machine()
        _ = health.observe(database: DatabaseObservation(answering: false, detail: "refused"), at: .ms(100))
        _ = health.setMode(.starting, at: .ms(200))
        _ = health.setMode(.serving, at: .ms(300))
        let events = health.observe(database: DatabaseObservation(answering: false, detail: "refused"), at: .ms(400))
        #expect(events.first == .failure(resource: "database", count: 1, reason: "the database does not answer: refused"))
    }

    @Test func theFirstGivenUpResourceIsTheCause() {
        var health = serving(threshold: 1)
        _ = health.observe(check: "repository", ok: false, detail: "timeout", at: .ms(1000))
        _ = health.observe(check: "repository", ok: false, detail: "timeout", at: .ms(1500))
        _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "active", restarts: 1), at: .ms(2000))
        #expect(health.handoverCause(at: .ms(2000))?.resource == "nginx.service", "in resource order: database, units, checks")
        #expect(health.givenUp(at: .ms(2000)) == ["nginx.service", "repository"])
    }

    @Test func describeSaysHowManyTimesInWhatWindow() {
        var health = serving(timeout: .seconds(90))
        _ = health.observe(unit: "nginx.service", UnitObservation(activeState: "active", result: "signal", restarts: 2), at: .ms(1000))
        let record = health.record(named: "nginx.service")!
        #expect(health.describeFailures(record, at: .ms(1000)) == "nginx.service failed 2 times in 90 s (the last: nginx.service: systemd restarted it after a failure (signal))")
    }

    @Test func resourcesOfAConfiguration() throws {
        let configuration = Configuration(
            cluster: ClusterSettings(node: "a"), nodes: [], database: DatabaseSettings(), units: ["x.service", "y.service"],
            checks: [HealthCheck(name: "web", kind: .tcp(IPAddress("198.18.0.100")!, port: 80), failures: 4)])
        #expect(ResourceSpec.all(in: configuration) == [
            ResourceSpec(name: "database", kind: .database), ResourceSpec(name: "x.service", kind: .unit),
            ResourceSpec(name: "y.service", kind: .unit), ResourceSpec(name: "web", kind: .check, probesToFail: 4),
        ])
    }
}
