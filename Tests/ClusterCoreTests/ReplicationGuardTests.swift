import ClusterCore
import Testing

/// The synchronous-replication guard on a virtual clock.
@Suite struct ReplicationGuardTests {
    typealias Observation = ReplicationGuard.Observation
    let t0 = MonotonicInstant(.seconds(100))

    func guardFor(_ mode: SynchronousMode) -> ReplicationGuard {
        ReplicationGuard(mode: mode, standbyName: "failover", absenceLimit: .milliseconds(1000), maxLagBytes: 1000)
    }

    static let named = "\"failover\""
    static let streamingNamed = Observation(walSenderState: "streaming", lagBytes: 0, synchronousStandbyNames: named)

    @Test func standbySettingIsQuoted() {
        #expect(guardFor(.strict).standbySetting == "\"failover\"")
        #expect(ReplicationGuard.quoted("a\"b") == "\"a\"\"b\"")
        #expect(ReplicationGuard.requiresStandby("") == false)
        #expect(ReplicationGuard.requiresStandby("  ") == false)
        #expect(ReplicationGuard.requiresStandby("*") == true)
    }

    @Test func nothingWhenNotTheActivePrimary() {
        var guard_ = guardFor(.strict)
        let empty = Observation(walSenderState: nil, synchronousStandbyNames: "")
        #expect(guard_.decide(activePrimary: false, peerState: .dead, observation: empty, now: t0) == .keep)
        var degradable = guardFor(.degradable)
        #expect(degradable.decide(activePrimary: false, peerState: .dead, observation: Self.streamingNamed, now: t0) == .keep)
    }

    @Test func offLeavesTheSettingAlone() {
        var guard_ = guardFor(.off)
        #expect(guard_.decide(activePrimary: true, peerState: .dead, observation: Self.streamingNamed, now: t0) == .keep)
        #expect(guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: "sync") == false)
    }

    @Test func strictAlwaysNamesTheStandby() {
        var guard_ = guardFor(.strict)
        let empty = Observation(walSenderState: nil, synchronousStandbyNames: "")
        guard case .require(let value, _) = guard_.decide(activePrimary: true, peerState: .dead, observation: empty, now: t0) else {
            Issue.record("strict must name the standby")
            return
        }
        #expect(value == Self.named)
        let away = Observation(walSenderState: nil, synchronousStandbyNames: Self.named)
        #expect(guard_.decide(activePrimary: true, peerState: .dead, observation: away, now: t0 + .seconds(60)) == .keep)
        // Under strict a named standby has every commit even while away: nothing is acknowledged without it.
        #expect(guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: nil))
        #expect(!guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: "", syncState: "sync"))
    }

    @Test func degradableReleasesWhenThePeerIsDeclaredDead() {
        var guard_ = guardFor(.degradable)
        #expect(guard_.decide(activePrimary: true, peerState: .alive, observation: Self.streamingNamed, now: t0) == .keep)
        let decision = guard_.decide(activePrimary: true, peerState: .dead, observation: Self.streamingNamed, now: t0 + .milliseconds(10))
        guard case .release = decision else {
            Issue.record("expected release, got \(decision)")
            return
        }
    }

    @Test func degradableReleasesAfterTheConnectionIsGoneForTheDeadTime() {
        var guard_ = guardFor(.degradable)
        let gone = Observation(walSenderState: nil, synchronousStandbyNames: Self.named)
        #expect(guard_.decide(activePrimary: true, peerState: .alive, observation: Self.streamingNamed, now: t0) == .keep)
        #expect(guard_.decide(activePrimary: true, peerState: .alive, observation: gone, now: t0 + .milliseconds(100)) == .keep)
        #expect(guard_.absentSince == t0 + .milliseconds(100))
        #expect(guard_.decide(activePrimary: true, peerState: .alive, observation: gone, now: t0 + .milliseconds(1099)) == .keep)
        guard case .release(let reason) = guard_.decide(activePrimary: true, peerState: .alive, observation: gone, now: t0 + .milliseconds(1100)) else {
            Issue.record("expected release after the dead time")
            return
        }
        #expect(reason.contains("1 s"))
    }

    @Test func aReturningConnectionResetsTheAbsenceClock() {
        var guard_ = guardFor(.degradable)
        let gone = Observation(walSenderState: nil, synchronousStandbyNames: Self.named)
        _ = guard_.decide(activePrimary: true, peerState: .alive, observation: gone, now: t0)
        _ = guard_.decide(activePrimary: true, peerState: .alive, observation: Self.streamingNamed, now: t0 + .milliseconds(900))
        #expect(guard_.absentSince == nil)
        #expect(guard_.decide(activePrimary: true, peerState: .alive, observation: gone, now: t0 + .milliseconds(1500)) == .keep)
    }

    @Test func degradableNamesTheStandbyAgainOnceCaughtUp() {
        var guard_ = guardFor(.degradable)
        let catchingUp = Observation(walSenderState: "catchup", lagBytes: 50_000, synchronousStandbyNames: "")
        #expect(guard_.decide(activePrimary: true, peerState: .alive, observation: catchingUp, now: t0) == .keep)
        let behind = Observation(walSenderState: "streaming", lagBytes: 1001, synchronousStandbyNames: "")
        #expect(guard_.decide(activePrimary: true, peerState: .alive, observation: behind, now: t0) == .keep)
        let caughtUp = Observation(walSenderState: "streaming", lagBytes: 1000, synchronousStandbyNames: "")
        guard case .require(let value, _) = guard_.decide(activePrimary: true, peerState: .alive, observation: caughtUp, now: t0) else {
            Issue.record("expected require once caught up")
            return
        }
        #expect(value == Self.named)
        // A dead peer whose connection lingers is not named again.
        #expect(guard_.decide(activePrimary: true, peerState: .dead, observation: caughtUp, now: t0) == .keep)
    }

    @Test func degradableReplacesAForeignSettingWhileTheStandbyStreams() {
        var guard_ = guardFor(.degradable)
        let star = Observation(walSenderState: "streaming", synchronousStandbyNames: "*")
        guard case .require(let value, _) = guard_.decide(activePrimary: true, peerState: .alive, observation: star, now: t0) else {
            Issue.record("expected the setting to be made exact")
            return
        }
        #expect(value == Self.named)
    }

    @Test func peerHasEveryCommitOnlyWhenNamedAndInSync() {
        let guard_ = guardFor(.degradable)
        #expect(guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: "sync"))
        #expect(!guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: "potential"))
        #expect(!guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: nil))
        #expect(!guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: nil, walSenderState: "catchup"))
        // Named exactly and streaming: PostgreSQL makes it the synchronous standby.
        #expect(guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: "async", walSenderState: "streaming"))
        #expect(!guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: "*", syncState: "async", walSenderState: "streaming"))
        #expect(!guard_.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: "", syncState: "sync"))
        #expect(!guard_.peerHasEveryCommit(activePrimary: false, synchronousStandbyNames: Self.named, syncState: "sync"))
    }

    @Test func slotNames() {
        #expect(DatabaseSettings.slotName(for: "failover") == "kusu_failover")
        #expect(DatabaseSettings.slotName(for: "Node-2.b") == "kusu_node_2_b")
        #expect(DatabaseSettings.slotName(for: String(repeating: "x", count: 80)).utf8.count == 63)
    }
}

/// After a handover the new primary waits for the old one from its first commit, and the old
/// one counts as having every acknowledged transaction while it rejoins (issue: a failure right
/// after a switchover).
@Suite struct ReplicationGuardHoldTests {
    typealias Observation = ReplicationGuard.Observation
    let t0 = MonotonicInstant(.seconds(100))
    static let named = "\"installer\""
    static let absent = Observation(walSenderState: nil, synchronousStandbyNames: named)
    static let streaming = Observation(walSenderState: "streaming", synchronousStandbyNames: named)

    func guardFor(_ mode: SynchronousMode) -> ReplicationGuard {
        ReplicationGuard(mode: mode, standbyName: "installer", absenceLimit: .milliseconds(1000), maxLagBytes: 1000)
    }

    func hasEveryCommit(_ g: ReplicationGuard, at ms: Int) -> Bool {
        g.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: nil, walSenderState: nil, at: t0 + .milliseconds(ms))
    }

    @Test func theOldPrimaryHasEveryCommitWhileHeldThenTheHoldEndsALimitBeforeTheRelease() {
        var g = guardFor(.degradable)
        g.holdAfterHandover(at: t0)
        #expect(hasEveryCommit(g, at: 0))
        #expect(g.decide(activePrimary: true, peerState: .alive, observation: Self.absent, now: t0 + .milliseconds(500)) == .keep)
        #expect(hasEveryCommit(g, at: 999))
        // The hold ends: the peer hears "not in sync" from now on, and the primary still waits.
        #expect(!hasEveryCommit(g, at: 1000))
        #expect(g.decide(activePrimary: true, peerState: .alive, observation: Self.absent, now: t0 + .milliseconds(1000)) == .keep)
        #expect(g.absentSince == t0 + .milliseconds(1000))
        #expect(g.decide(activePrimary: true, peerState: .alive, observation: Self.absent, now: t0 + .milliseconds(1999)) == .keep)
        // A whole absence limit after the peer was told: commits stop waiting.
        guard case .release = g.decide(activePrimary: true, peerState: .alive, observation: Self.absent, now: t0 + .milliseconds(2000)) else {
            Issue.record("no release two limits after the handover"); return
        }
    }

    @Test func aRejoinThatStreamsEndsTheHold() {
        var g = guardFor(.degradable)
        g.holdAfterHandover(at: t0)
        #expect(g.decide(activePrimary: true, peerState: .alive, observation: Self.streaming, now: t0 + .milliseconds(400)) == .keep)
        #expect(g.heldUntil == nil)
        #expect(g.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: "sync", at: t0 + .milliseconds(500)))
        // Away later: the usual rule (not in sync at once, released after the limit).
        #expect(g.decide(activePrimary: true, peerState: .alive, observation: Self.absent, now: t0 + .milliseconds(600)) == .keep)
        #expect(!hasEveryCommit(g, at: 600))
        guard case .release = g.decide(activePrimary: true, peerState: .alive, observation: Self.absent, now: t0 + .milliseconds(1600)) else {
            Issue.record("no release a limit after the standby went away"); return
        }
    }

    @Test func aDeadPeerIsReleasedAtOnceEvenWhileHeld() {
        var g = guardFor(.degradable)
        g.holdAfterHandover(at: t0)
        guard case .release = g.decide(activePrimary: true, peerState: .dead, observation: Self.absent, now: t0 + .milliseconds(100)) else {
            Issue.record("a dead peer is still waited for"); return
        }
    }

    @Test func onlyDegradableHolds() {
        for mode in [SynchronousMode.strict, .off] {
            var g = guardFor(mode)
            g.holdAfterHandover(at: t0)
            #expect(g.heldUntil == nil, "\(mode)")
        }
        // strict: the named peer has every commit anyway.
        #expect(hasEveryCommit(guardFor(.strict), at: 0))
        #expect(!hasEveryCommit(guardFor(.off), at: 0))
    }

    @Test func theHoldCountsOnlyForTheNamedPeerOnTheActivePrimary() {
        var g = guardFor(.degradable)
        g.holdAfterHandover(at: t0)
        #expect(!g.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: "", syncState: nil, at: t0))
        #expect(!g.peerHasEveryCommit(activePrimary: false, synchronousStandbyNames: Self.named, syncState: nil, at: t0))
        #expect(!g.peerHasEveryCommit(activePrimary: true, synchronousStandbyNames: Self.named, syncState: nil), "without a time, no hold")
    }
}
