import ClusterCore
import FileSync
import Testing

extension MonotonicInstant {
    static func s(_ seconds: Int) -> MonotonicInstant { MonotonicInstant(.seconds(seconds)) }
}

/// When pulling is allowed: a decision table over this node's role and the peer's state and role.
@Suite struct PermissionTable {
    struct Row: Sendable, CustomTestStringConvertible {
        var role: String
        var peerState: String
        var peerRole: String
        var verdict: PullPermission
        var testDescription: String { "\(role), peer \(peerState) \(peerRole)" }
    }

    static let rows: [Row] = [
        Row(role: "standby", peerState: "alive", peerRole: "active", verdict: .allowed),
        Row(role: "standby", peerState: "late", peerRole: "active", verdict: .allowed),
        Row(role: "active", peerState: "alive", peerRole: "standby",
            verdict: .paused("this node is active: it is the source, not a copy")),
        Row(role: "active", peerState: "dead", peerRole: "active",
            verdict: .paused("this node is active: it is the source, not a copy")),
        Row(role: "taking-over", peerState: "dead", peerRole: "active",
            verdict: .paused("this node is taking over: it is becoming the source")),
        Row(role: "releasing", peerState: "alive", peerRole: "standby",
            verdict: .paused("this node is releasing: it pulls again once it is standby")),
        Row(role: "failed", peerState: "alive", peerRole: "active",
            verdict: .paused("this node's role is failed: it pulls only as a standby")),
        Row(role: "bogus", peerState: "alive", peerRole: "active",
            verdict: .paused("this node's role is unknown: it pulls only as a standby")),
        Row(role: "standby", peerState: "dead", peerRole: "active",
            verdict: .paused("the peer is dead: there is nothing to pull from, the copy here stays as it is")),
        Row(role: "standby", peerState: "unknown", peerRole: "unknown", verdict: .paused("the peer has not been heard yet")),
        Row(role: "standby", peerState: "alive", peerRole: "standby",
            verdict: .paused("the peer is standby, not active: only the active node's trees are pulled")),
        Row(role: "standby", peerState: "alive", peerRole: "taking-over",
            verdict: .paused("the peer is taking-over, not active: only the active node's trees are pulled")),
        Row(role: "standby", peerState: "alive", peerRole: "unknown",
            verdict: .paused("the peer is unknown, not active: only the active node's trees are pulled")),
    ]

    @Test(arguments: rows)
    func verdict(row: Row) {
        #expect(PullPermission.evaluate(PairView(role: row.role, peerState: row.peerState, peerRole: row.peerRole)) == row.verdict)
    }

    @Test func rolesUnknown() {
        #expect(PullPermission.rolesUnknown("kusu-hbd is not running").description ==
                "paused: the roles are unknown (kusu-hbd is not running)")
    }
}

@Suite struct Scheduling {
    static let trees = [
        SyncTree(path: "/srv/kusu/repos", interval: .seconds(30)),
        SyncTree(path: "/tftpboot", pull: false),
        SyncTree(path: "/depot", interval: .seconds(10)),
    ]

    @Test func nothingBeforeTheFirstPermission() {
        let scheduler = PullScheduler(trees: Self.trees)
        #expect(scheduler.due(at: .s(0)).isEmpty)
        #expect(scheduler.nextDue(at: .s(0)) == nil)
    }

    @Test func everyPulledTreeDueAtStartAndNotPulledOnesNever() {
        var scheduler = PullScheduler(trees: Self.trees)
        #expect(scheduler.update(.allowed) == .resumed)
        #expect(scheduler.due(at: .s(0)) == [0, 2])
        #expect(scheduler.nextDue(at: .s(0)) == .s(0))
    }

    @Test func dueOneIntervalAfterEachSuccess() {
        var scheduler = PullScheduler(trees: Self.trees)
        _ = scheduler.update(.allowed)
        scheduler.record(index: 0, succeeded: true, started: .s(0))
        scheduler.record(index: 2, succeeded: true, started: .s(1))
        #expect(scheduler.due(at: .s(5)).isEmpty)
        #expect(scheduler.nextDue(at: .s(5)) == .s(11))
        #expect(scheduler.due(at: .s(11)) == [2])
        scheduler.record(index: 2, succeeded: true, started: .s(11))
        #expect(scheduler.due(at: .s(20)).isEmpty)
        #expect(scheduler.due(at: .s(21)) == [2])
        // Both overdue: the most overdue first (2 since 21 s, 0 since 30 s).
        #expect(scheduler.due(at: .s(30)) == [2, 0])
    }

    @Test func failuresRetrySoonerWithBoundedBackoff() {
        var scheduler = PullScheduler(trees: [SyncTree(path: "/a", interval: .seconds(60))])
        _ = scheduler.update(.allowed)
        var now = MonotonicInstant.s(0)
        var delays: [Duration] = []
        for _ in 0..<6 {
            scheduler.record(index: 0, succeeded: false, started: now)
            let next = scheduler.nextDue(at: now)!
            delays.append(next - now)
            now = next
        }
        #expect(delays == [.seconds(5), .seconds(10), .seconds(20), .seconds(40), .seconds(60), .seconds(60)])
        scheduler.record(index: 0, succeeded: true, started: now)
        #expect(scheduler.nextDue(at: now)! - now == .seconds(60), "a success resets the backoff")
    }

    @Test func retryNeverLaterThanTheInterval() {
        #expect(PullScheduler.retryDelay(interval: .seconds(2), failures: 1) == .seconds(2))
        #expect(PullScheduler.retryDelay(interval: .seconds(2), failures: 50) == .seconds(2))
        #expect(PullScheduler.retryDelay(interval: .seconds(86400), failures: 1000) == .seconds(86400))
    }

    @Test func pausedWhileActiveThenEverythingDueOnResume() {
        var scheduler = PullScheduler(trees: Self.trees)
        _ = scheduler.update(.allowed)
        scheduler.record(index: 0, succeeded: true, started: .s(0))
        scheduler.record(index: 2, succeeded: true, started: .s(0))
        let active = PullPermission.evaluate(PairView(role: "active", peerState: "alive", peerRole: "standby"))
        #expect(scheduler.update(active) == .paused("this node is active: it is the source, not a copy"))
        #expect(scheduler.update(active) == nil, "no change, no event")
        #expect(scheduler.due(at: .s(100)).isEmpty)
        #expect(scheduler.nextDue(at: .s(100)) == nil)
        // A different reason is a change too (logged once each).
        #expect(scheduler.update(.paused("the peer is dead")) == .paused("the peer is dead"))
        // Standby again under an active peer: everything at once, not at the old due times.
        #expect(scheduler.update(.allowed) == .resumed)
        #expect(scheduler.due(at: .s(101)) == [0, 2])
    }

    @Test func peerDeadPausesPulling() {
        var scheduler = PullScheduler(trees: Self.trees)
        _ = scheduler.update(.allowed)
        scheduler.record(index: 0, succeeded: true, started: .s(0))
        scheduler.record(index: 2, succeeded: true, started: .s(0))
        _ = scheduler.update(PullPermission.evaluate(PairView(role: "standby", peerState: "dead", peerRole: "active")))
        #expect(scheduler.due(at: .s(1000)).isEmpty)
    }

    @Test func abandonedAndManualPulls() {
        var scheduler = PullScheduler(trees: Self.trees)
        _ = scheduler.update(.allowed)
        scheduler.record(index: 0, succeeded: true, started: .s(0))
        scheduler.record(index: 2, succeeded: true, started: .s(0))
        scheduler.abandon(index: 2)
        #expect(scheduler.due(at: .s(1)) == [2])
        scheduler.record(index: 2, succeeded: true, started: .s(1))
        scheduler.pullAllNow()
        #expect(scheduler.due(at: .s(2)) == [0, 2])
        // Unknown or not-pulled indexes are ignored.
        scheduler.record(index: 1, succeeded: true, started: .s(2))
        scheduler.record(index: 9, succeeded: false, started: .s(2))
        #expect(scheduler.due(at: .s(2)) == [0, 2])
    }
}
