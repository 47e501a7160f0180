import ClusterCore
import DBusKit
import EffectorService
import Synchronization
import Testing

/// The effector's observations for kusu-hbd's health decisions: the database health query
/// (a hung or refusing server is seen within the timeout), the units as systemd reports them,
/// and KillDatabase.
@Suite struct EffectorHealthTests {
    /// A configuration with `[health]` timings short enough for a test.
    func configuration() throws -> Configuration {
        var configuration = try testConfiguration()
        configuration.health.databaseInterval = .milliseconds(20)
        configuration.health.databaseTimeout = .milliseconds(100)
        return configuration
    }

    @Test func aHealthyDatabaseAnswers() throws {
        let h = try Harness(configuration: try configuration())
        h.effector.startDatabaseHealth()
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.databaseHealth.lastAnswerUSec > 0 }
        #expect(h.effector.databaseHealth.answering)
        #expect(h.effector.databaseHealth.detail == "")
        #expect(h.effector.databaseHealth.lastAnswerUSec > 0)
        // Answering from the start (a grace of one timeout): nothing to signal.
        #expect(!h.changes.contains { $0.contains(.databaseHealth) })
    }

    @Test func aHungDatabaseIsSeenWithinTheTimeoutAndNotPiledOn() throws {
        let h = try Harness(configuration: try configuration())
        h.effector.startDatabaseHealth()
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.databaseHealth.answering }
        try #require(h.effector.databaseHealth.answering)
        h.database!.health.withLock { $0 = .hang }
        let hungAt = h.loop.now
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { !h.effector.databaseHealth.answering }
        let seenAfter = h.loop.now - hungAt
        #expect(!h.effector.databaseHealth.answering)
        #expect(h.changes.last == [.databaseHealth], "the change is signalled")
        // The last answer was at most one interval before the hang; the verdict turns at its
        // deadline (100 ms), whatever the hung query does.
        #expect(seenAfter <= .milliseconds(400), "seen after \(seenAfter)")
        #expect(h.effector.databaseHealth.detail == "no answer within 0.1 s: a query has not returned (the server may be hung)")
        // One query at a time: while it hangs no new one starts (nothing piles up); once it
        // returns, the next answers and the database is healthy again.
        h.database!.health.withLock { $0 = .answer }
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.databaseHealth.answering }
        #expect(h.effector.databaseHealth.answering)
    }

    @Test func aRefusingDatabaseIsUnhealthyAfterTheTimeoutWithTheReason() throws {
        let h = try Harness(configuration: try configuration())
        h.effector.startDatabaseHealth()
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.databaseHealth.answering }
        h.database!.health.withLock { $0 = .fail("cannot connect: nothing listens on /run/postgresql/.s.PGSQL.5432") }
        let at = h.loop.now
        // Still answering until the timeout (a restart of the server within it goes unnoticed).
        _ = try h.loop.run(until: h.loop.now + .milliseconds(50)) { false }
        #expect(h.effector.databaseHealth.answering)
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { !h.effector.databaseHealth.answering }
        #expect(h.loop.now - at >= .milliseconds(80))
        #expect(h.effector.databaseHealth.detail == "no answer within 0.1 s: cannot connect: nothing listens on /run/postgresql/.s.PGSQL.5432")
    }

    @Test func unitObservationsAreReadAndSignalled() throws {
        let h = try Harness()
        h.units.active = ["dnsmasq.service"]
        h.effector.refreshUnits()
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.unitObservations.count == 3 }
        #expect(h.effector.unitObservations["dnsmasq.service"]?.activeState == "active")
        #expect(h.effector.unitStates == ["dnsmasq.service": "active", "tftpd-hpa.service": "inactive", "nginx.service": "inactive"])
        #expect(h.changes.last == [.unitStates, .units])
        // One unit re-read: only it changes.
        h.units.active = ["dnsmasq.service", "nginx.service"]
        h.effector.refreshUnits(["nginx.service"])
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.unitStates["nginx.service"] == "active" }
        #expect(h.effector.unitStates["nginx.service"] == "active")
        let count = h.changes.count
        h.effector.refreshUnits()
        _ = try h.loop.run(until: h.loop.now + .milliseconds(20)) { false }
        #expect(h.changes.count == count, "nothing changed: no signal")
        // A name that is not configured is not read.
        h.effector.refreshUnits(["sshd.service"])
        #expect(h.effector.unitObservations["sshd.service"] == nil)
    }

    @Test func killDatabaseIsRefusedWhileAnAddressIsHeldThenKillsTheUnit() throws {
        let h = try Harness(databaseRole: "primary")
        _ = try h.run(.addAddress(try testConfiguration().addresses[0]))
        let refused = try h.run(.killDatabase)
        guard case .failure(let error)? = refused else { Issue.record("KillDatabase was not refused: \(String(describing: refused))"); return }
        #expect(error.code == .invalidArgument)
        #expect(!h.journal.all.contains("kill postgresql@15-main.service"))
        _ = try h.run(.removeAddress(try testConfiguration().addresses[0]))
        let killed = try h.run(.killDatabase)
        #expect(killed.map { if case .success = $0 { true } else { false } } == true)
        #expect(h.journal.all.contains("kill postgresql@15-main.service"))
        #expect(h.effector.databaseState.role == "down")
        #expect(h.effector.lastOperation?.name == "KillDatabase")
    }
}

/// The takeover that completes a handover, and the follower without a copy (a failure right
/// after a switchover must find the old primary with every acknowledged transaction).
@Suite struct EffectorHandoverTests {
    @Test func aTakeoverAfterAHandoverWaitsForTheOldPrimaryAndPreparesItsSlot() throws {
        let h = try Harness()
        let outcome = try h.run(.takeoverAfterHandover)
        #expect(outcome.map { if case .success = $0 { true } else { false } } == true)
        // degradable: the peer is named before the addresses exist (no client commit without it).
        let journal = h.journal.all
        #expect(Array(journal.prefix(3)) == ["promote", "synchronous '\"installer\"'", "slot kusu_installer"])
        #expect(journal.firstIndex { $0.hasPrefix("add ") }! > journal.firstIndex(of: "slot kusu_installer")!)
        #expect(h.effector.lastOperation?.name == "TakeoverAfterHandover")
    }

    @Test func aPlainTakeoverInDegradableModeWaitsForNobody() throws {
        let h = try Harness()
        _ = try h.run(.takeover)
        #expect(Array(h.journal.all.prefix(2)) == ["promote", "synchronous ''"])
        #expect(!h.journal.all.contains { $0.hasPrefix("slot ") })
    }

    @Test func followingThePeerIsLocalAndRefusedWhileAnAddressIsHeld() throws {
        let h = try Harness(databaseRole: "down")
        let peer = try #require(IPAddress("198.18.0.11"))
        _ = try h.run(.addAddress(try testConfiguration().addresses[0]))
        guard case .failure(let error)? = try h.run(.followDatabase(primary: peer)) else { Issue.record("not refused"); return }
        #expect(error.code == .invalidArgument)
        _ = try h.run(.removeAddress(try testConfiguration().addresses[0]))
        let before = h.journal.all.count
        guard case .success? = try h.run(.followDatabase(primary: peer)) else { Issue.record("FollowDatabase failed"); return }
        #expect(Array(h.journal.all.dropFirst(before)) == [
            "stop postgresql@15-main.service", "follow 198.18.0.11", "start postgresql@15-main.service", "waitUntilStandby",
        ])
        #expect(h.effector.databaseState.role == "standby")
    }
}

@Suite struct EffectorHealthGraceTests {
    /// A database stopped for longer than the timeout, then started by a takeover, is not
    /// reported unhealthy for having been down: a fresh grace from its start.
    @Test func aStartedDatabaseGetsAFreshGrace() throws {
        var configuration = try testConfiguration()
        configuration.health.databaseInterval = .milliseconds(20)
        configuration.health.databaseTimeout = .milliseconds(100)
        let h = try Harness(databaseRole: "down", configuration: configuration)
        h.database!.health.withLock { $0 = .fail("cannot connect: nothing listens") }
        h.effector.startDatabaseHealth()
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { !h.effector.databaseHealth.answering }
        try #require(!h.effector.databaseHealth.answering)
        h.effector.refreshDatabase()
        _ = try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.databaseState.role == "down" }
        h.database!.health.withLock { $0 = .hang }   // started, not answering yet
        let database = h.database!
        h.units.onStart = { unit in if unit == "postgresql@15-main.service" { database.role.withLock { $0 = "standby" } } }
        let result = try h.run(.takeover)
        #expect(result.map { if case .success = $0 { true } else { false } } == true)
        #expect(h.effector.databaseHealth.answering, "a fresh grace from the start")
        h.database!.health.withLock { $0 = .answer }
    }
}
