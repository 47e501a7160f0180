import ClusterCore
import Testing

/// The automatic-failover decision table: every row is one situation and its verdict.
@Suite struct FailoverDecisionTable {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var inputs: SwitchingInputs
        var verdict: SwitchVerdict
        var testDescription: String { name }
    }

    static let base = SwitchingInputs(role: .standby, peerState: .dead)

    static func with(_ change: (inout SwitchingInputs) -> Void) -> SwitchingInputs {
        var inputs = base
        change(&inputs)
        return inputs
    }

    static let automaticRows: [Row] = [
        Row(name: "peer dead, all clear", inputs: base, verdict: .proceed),
        Row(name: "peer alive", inputs: with { $0.peerState = .alive }, verdict: .refuse(.peerNotDead(.alive))),
        Row(name: "peer late", inputs: with { $0.peerState = .late }, verdict: .refuse(.peerNotDead(.late))),
        Row(name: "peer unknown", inputs: with { $0.peerState = .unknown }, verdict: .refuse(.peerNotDead(.unknown))),
        Row(name: "auto failover off", inputs: with { $0.autoFailover = false }, verdict: .refuse(.autoFailoverOff)),
        Row(name: "maintenance", inputs: with { $0.maintenance = true }, verdict: .refuse(.maintenance)),
        Row(name: "maintenance wins over auto off", inputs: with { $0.maintenance = true; $0.autoFailover = false },
            verdict: .refuse(.maintenance)),
        Row(name: "tie-breaker unreachable", inputs: with { $0.tieBreakerReachable = false }, verdict: .refuse(.tieBreakerUnreachable)),
        Row(name: "lag unknown", inputs: with { $0.lagBytes = nil }, verdict: .refuse(.lagUnknown)),
        Row(name: "lag at the limit", inputs: with { $0.lagBytes = 1_048_576 }, verdict: .proceed),
        Row(name: "lag one byte over", inputs: with { $0.lagBytes = 1_048_577 },
            verdict: .refuse(.lagTooHigh(bytes: 1_048_577, limit: 1_048_576))),
        Row(name: "no database: lag does not matter", inputs: with { $0.hasDatabase = false; $0.lagBytes = nil }, verdict: .proceed),
        Row(name: "standby not in sync", inputs: with { $0.inSync = false }, verdict: .refuse(.notInSync)),
        Row(name: "standby in sync", inputs: with { $0.inSync = true }, verdict: .proceed),
        Row(name: "lag is reported before sync", inputs: with { $0.inSync = false; $0.lagBytes = 2_000_000 },
            verdict: .refuse(.lagTooHigh(bytes: 2_000_000, limit: 1_048_576))),
        Row(name: "no database: sync does not matter", inputs: with { $0.hasDatabase = false; $0.inSync = false }, verdict: .proceed),
        Row(name: "effector busy", inputs: with { $0.effectorBusy = true }, verdict: .refuse(.effectorBusy)),
        Row(name: "already active", inputs: with { $0.role = .active }, verdict: .refuse(.notStandby(.active))),
        Row(name: "taking over", inputs: with { $0.role = .takingOver }, verdict: .refuse(.notStandby(.takingOver))),
        Row(name: "releasing", inputs: with { $0.role = .releasing }, verdict: .refuse(.notStandby(.releasing))),
        Row(name: "failed node does not retry by itself", inputs: with { $0.role = .failed }, verdict: .refuse(.notStandby(.failed))),
        Row(name: "cut off: peer dead and tie-breaker silent", inputs: with { $0.tieBreakerReachable = false; $0.lagBytes = 0 },
            verdict: .refuse(.tieBreakerUnreachable)),
    ]

    @Test(arguments: automaticRows)
    func automatic(row: Row) {
        #expect(FailoverPolicy.automatic(row.inputs) == row.verdict)
    }

    static let manualRows: [(String, SwitchingInputs, Bool, SwitchVerdict)] = [
        ("peer dead", base, false, .proceed),
        ("peer alive refused", with { $0.peerState = .alive }, false, .refuse(.peerAlive(.alive))),
        ("peer late refused", with { $0.peerState = .late }, false, .refuse(.peerAlive(.late))),
        ("peer unknown refused", with { $0.peerState = .unknown }, false, .refuse(.peerAlive(.unknown))),
        ("peer alive forced", with { $0.peerState = .alive }, true, .proceed),
        ("maintenance does not stop an operator", with { $0.maintenance = true }, false, .proceed),
        ("auto off does not stop an operator", with { $0.autoFailover = false }, false, .proceed),
        ("tie-breaker silent refused", with { $0.tieBreakerReachable = false }, false, .refuse(.tieBreakerUnreachable)),
        ("tie-breaker silent forced", with { $0.tieBreakerReachable = false }, true, .proceed),
        ("lag too high refused", with { $0.lagBytes = 5_000_000 }, false, .refuse(.lagTooHigh(bytes: 5_000_000, limit: 1_048_576))),
        ("lag too high forced", with { $0.lagBytes = 5_000_000 }, true, .proceed),
        ("busy even when forced", with { $0.effectorBusy = true }, true, .refuse(.effectorBusy)),
        ("active refused", with { $0.role = .active }, true, .refuse(.notStandby(.active))),
        ("failed node may be retried", with { $0.role = .failed }, false, .proceed),
    ]

    @Test func manual() {
        for (name, inputs, force, verdict) in Self.manualRows {
            #expect(FailoverPolicy.manualTakeover(inputs, force: force) == verdict, "\(name)")
        }
    }

    /// Exhaustive over the boolean inputs and peer states: automatic failover proceeds exactly
    /// when every condition holds, and never in maintenance.
    @Test func exhaustive() {
        for state in PeerState.allCases {
            for bits in 0..<64 {
                let inputs = SwitchingInputs(
                    role: .standby, peerState: state, autoFailover: bits & 1 != 0, maintenance: bits & 2 != 0,
                    tieBreakerReachable: bits & 4 != 0, hasDatabase: true, lagBytes: bits & 8 != 0 ? 0 : 9_999_999,
                    effectorBusy: bits & 16 != 0)
                let expected = state == .dead && bits & 1 != 0 && bits & 2 == 0 && bits & 4 != 0 && bits & 8 != 0 && bits & 16 == 0
                #expect((FailoverPolicy.automatic(inputs) == .proceed) == expected, "\(state) \(bits)")
            }
        }
    }

    @Test func refusalsReadWell() {
        #expect(SwitchRefusal.tieBreakerUnreachable.description == "the tie-breaker does not answer: this node may be the one cut off")
        #expect(SwitchRefusal.lagTooHigh(bytes: 10, limit: 5).description == "the local database is 10 bytes behind the peer (limit 5)")
    }
}

@Suite struct SplitBrain {
    @Test(arguments: [
        // (local epoch, local priority, local name, peer epoch, peer priority, peer name, local yields)
        (UInt64(3), 50, "failover", UInt64(4), 100, "installer", true),
        (5, 50, "failover", 4, 100, "installer", false),
        (4, 50, "failover", 4, 100, "installer", true),
        (4, 100, "installer", 4, 50, "failover", false),
        (4, 70, "b", 4, 70, "a", true),
        (4, 70, "a", 4, 70, "b", false),
    ])
    func lowerEpochYields(le: UInt64, lp: Int, ln: String, pe: UInt64, pp: Int, pn: String, yields: Bool) {
        #expect(FailoverPolicy.localYields(localEpoch: le, localPriority: lp, localName: ln, peerEpoch: pe, peerPriority: pp, peerName: pn) == yields)
        // Both nodes always agree: exactly one of them yields.
        #expect(FailoverPolicy.localYields(localEpoch: pe, localPriority: pp, localName: pn, peerEpoch: le, peerPriority: lp, peerName: ln) != yields)
    }
}

@Suite struct RoleTransitions {
    @Test func takeoverRaisesTheEpochAboveBothAndPersistsItFirst() {
        var machine = RoleMachine(epoch: 3)
        let actions = machine.beginTakeover(peerEpoch: 7, reason: "peer dead")
        #expect(machine.role == .takingOver)
        #expect(machine.epoch == 8)
        #expect(actions == [.persistEpoch(8), .roleChanged(from: .standby, to: .takingOver, reason: "peer dead"), .takeover(reason: "peer dead")])
        #expect(machine.takeoverFinished(success: true, detail: "") == [.roleChanged(from: .takingOver, to: .active, reason: "takeover complete")])
        #expect(machine.role == .active)
        // A second takeover while active does nothing.
        #expect(machine.beginTakeover(peerEpoch: 0, reason: "again").isEmpty)
    }

    /// The new epoch could not be written: no takeover (the effector is not called), the role
    /// and the epoch as before (the shell refuses and tries again); a later attempt may work.
    @Test func anEpochThatCannotBePersistedStopsTheTakeover() {
        var machine = RoleMachine(epoch: 3)
        _ = machine.beginTakeover(peerEpoch: 7, reason: "peer dead")
        #expect(machine.epochNotPersisted().isEmpty)
        #expect(machine.role == .standby)
        #expect(machine.epoch == 3)
        #expect(SwitchRefusal.epochNotPersisted("No space left on device").description == "the new epoch could not be written: No space left on device")
        // Only while taking over.
        #expect(machine.epochNotPersisted().isEmpty)
        #expect(machine.role == .standby)
        let retry = machine.beginTakeover(peerEpoch: 7, reason: "retry")
        #expect(retry.first == .persistEpoch(8))
        #expect(machine.takeoverFinished(success: true, detail: "") == [.roleChanged(from: .takingOver, to: .active, reason: "takeover complete")])
        _ = machine.epochNotPersisted()
        #expect(machine.role == .active)
        #expect(machine.epoch == 8)
        // From failed, back to failed.
        var failed = RoleMachine(role: .failed, epoch: 5)
        _ = failed.beginTakeover(peerEpoch: 0, reason: "r")
        _ = failed.epochNotPersisted()
        #expect(failed.role == .failed)
        #expect(failed.epoch == 5)
    }

    @Test func failedTakeoverCanBeReleasedOrRetried() {
        var machine = RoleMachine(epoch: 1)
        _ = machine.beginTakeover(peerEpoch: 1, reason: "r")
        #expect(machine.takeoverFinished(success: false, detail: "UnitFailed") == [
            .roleChanged(from: .takingOver, to: .failed, reason: "takeover failed: UnitFailed"),
        ])
        #expect(machine.role == .failed)
        let retry = machine.beginTakeover(peerEpoch: 1, reason: "retry")
        #expect(retry.contains(.takeover(reason: "retry")))
        #expect(machine.epoch == 3)
    }

    @Test func yieldingReleasesToStandby() {
        var machine = RoleMachine(role: .active, epoch: 4)
        #expect(machine.beginRelease(reason: "peer has epoch 5") == [
            .roleChanged(from: .active, to: .releasing, reason: "peer has epoch 5"), .release(reason: "peer has epoch 5"),
        ])
        #expect(machine.releaseFinished(success: true, detail: "") == [.roleChanged(from: .releasing, to: .standby, reason: "released")])
        #expect(machine.role == .standby)
        #expect(machine.releaseFinished(success: true, detail: "").isEmpty)
    }

    @Test func standbyFollowsTheHighestEpochItHears() {
        var machine = RoleMachine(epoch: 2)
        #expect(machine.observe(peerEpoch: 1).isEmpty)
        #expect(machine.observe(peerEpoch: 6) == [.persistEpoch(6)])
        #expect(machine.epoch == 6)
        var active = RoleMachine(role: .active, epoch: 2)
        #expect(active.observe(peerEpoch: 9).isEmpty)  // an active node decides by localYields, not by copying
    }
}

@Suite struct StartupElection {
    static let inputs = SwitchingInputs(role: .standby, peerState: .alive, peerRole: .standby)
    static let installer = (epoch: UInt64(0), priority: 100, name: "installer")
    static let failover = (epoch: UInt64(0), priority: 50, name: "failover")

    @Test func thePrimaryDatabaseWinsAndOnlyIt() {
        #expect(FailoverPolicy.startup(Self.inputs, localDatabaseRole: "primary", local: Self.installer, peer: Self.failover) == .proceed)
        // The standby database never wins, whatever the priority.
        #expect(FailoverPolicy.startup(Self.inputs, localDatabaseRole: "standby", local: Self.installer, peer: Self.failover)
            == .refuse(.notElected("the local database is standby, not the primary")))
        #expect(FailoverPolicy.startup(Self.inputs, localDatabaseRole: nil, local: Self.installer, peer: Self.failover)
            == .refuse(.notElected("the local database's role is unknown")))
    }

    @Test func theNewerEpochWins() {
        let stale = (epoch: UInt64(0), priority: 100, name: "installer")
        let newer = (epoch: UInt64(1), priority: 50, name: "failover")
        // A returning node whose database is a stale primary does not activate against a newer epoch.
        #expect(FailoverPolicy.startup(Self.inputs, localDatabaseRole: "primary", local: stale, peer: newer)
            == .refuse(.notElected("the peer has the newer epoch (1 > 0)")))
        #expect(FailoverPolicy.startup(Self.inputs, localDatabaseRole: "primary", local: newer, peer: stale) == .proceed)
    }

    @Test func withoutADatabasePriorityThenNameDecide() {
        var inputs = Self.inputs
        inputs.hasDatabase = false
        #expect(FailoverPolicy.startup(inputs, localDatabaseRole: nil, local: Self.installer, peer: Self.failover) == .proceed)
        #expect(FailoverPolicy.startup(inputs, localDatabaseRole: nil, local: Self.failover, peer: Self.installer)
            == .refuse(.notElected("the peer has precedence (priority 100)")))
        let a = (epoch: UInt64(2), priority: 70, name: "a")
        let b = (epoch: UInt64(2), priority: 70, name: "b")
        #expect(FailoverPolicy.startup(inputs, localDatabaseRole: nil, local: a, peer: b) == .proceed)
        #expect(FailoverPolicy.startup(inputs, localDatabaseRole: nil, local: b, peer: a) != .proceed)
    }

    @Test func noElection() {
        func changed(_ change: (inout SwitchingInputs) -> Void) -> SwitchingInputs {
            var inputs = Self.inputs
            change(&inputs)
            return inputs
        }
        let cases: [(String, SwitchingInputs)] = [
            ("peer active", changed { $0.peerRole = .active }),
            ("peer late", changed { $0.peerState = .late }),
            ("peer dead", changed { $0.peerState = .dead }),
            ("maintenance", changed { $0.maintenance = true }),
            ("auto off", changed { $0.autoFailover = false }),
            ("busy", changed { $0.effectorBusy = true }),
            ("already active", changed { $0.role = .active }),
        ]
        for (name, inputs) in cases {
            #expect(FailoverPolicy.startup(inputs, localDatabaseRole: "primary", local: Self.installer, peer: Self.failover) != .proceed, "\(name)")
        }
    }
}

@Suite struct RejoinAfterFailover {
    static let inputs = SwitchingInputs(role: .standby, peerState: .alive, peerRole: .active)

    @Test func aStalePrimaryOrAStoppedDatabaseRejoins() {
        #expect(FailoverPolicy.rejoin(Self.inputs, localDatabaseRole: "primary") == .proceed)
        #expect(FailoverPolicy.rejoin(Self.inputs, localDatabaseRole: "down") == .proceed)
    }

    @Test func nothingToDoOrNotNow() {
        #expect(FailoverPolicy.rejoin(Self.inputs, localDatabaseRole: "standby") != .proceed)
        #expect(FailoverPolicy.rejoin(Self.inputs, localDatabaseRole: nil) != .proceed)
        var peerStandby = Self.inputs
        peerStandby.peerRole = .standby
        #expect(FailoverPolicy.rejoin(peerStandby, localDatabaseRole: "primary") != .proceed)
        var active = Self.inputs
        active.role = .active
        #expect(FailoverPolicy.rejoin(active, localDatabaseRole: "primary") == .refuse(.notStandby(.active)))
        var maintenance = Self.inputs
        maintenance.maintenance = true
        #expect(FailoverPolicy.rejoin(maintenance, localDatabaseRole: "primary") == .refuse(.maintenance))
        var noDatabase = Self.inputs
        noDatabase.hasDatabase = false
        #expect(FailoverPolicy.rejoin(noDatabase, localDatabaseRole: "primary") != .proceed)
        var late = Self.inputs
        late.peerState = .late
        #expect(FailoverPolicy.rejoin(late, localDatabaseRole: "primary") != .proceed)
    }
}

@Suite struct Failback {
    static let inputs = SwitchingInputs(role: .standby, peerState: .alive, peerRole: .active)

    @Test func onlyWhenAskedForAndCaughtUp() {
        func verdict(_ inputs: SwitchingInputs = Self.inputs, on: Bool = true, local: Int = 100, peer: Int = 50, db: String? = "standby") -> SwitchVerdict {
            FailoverPolicy.failback(inputs, autoFailback: on, localPriority: local, peerPriority: peer, localDatabaseRole: db)
        }
        #expect(verdict() == .proceed)
        #expect(verdict(on: false) == .refuse(.notElected("auto_failback is off")))
        #expect(verdict(local: 50, peer: 100) == .refuse(.notElected("the peer has the higher priority")))
        #expect(verdict(db: "primary") != .proceed)  // not rejoined yet
        var lagging = Self.inputs
        lagging.lagBytes = 9_999_999
        #expect(verdict(lagging) == .refuse(.lagTooHigh(bytes: 9_999_999, limit: 1_048_576)))
        var maintenance = Self.inputs
        maintenance.maintenance = true
        #expect(verdict(maintenance) == .refuse(.maintenance))
        var peerStandby = Self.inputs
        peerStandby.peerRole = .standby
        #expect(verdict(peerStandby) != .proceed)
    }
}

/// The active node's service-loss handover: every condition, one at a time.
@Suite struct ServiceLossHandover {
    /// Cut off: the active node reaches no tie-breaker; the standby hears it, reaches its own, is in sync.
    static let cutOff = SwitchingInputs(role: .active, peerState: .alive, peerRole: .standby, tieBreakerReachable: false)

    static func verdict(
        _ inputs: SwitchingInputs = cutOff, enabled: Bool = true, configured: Bool = true, peerReaches: Bool = true, inSync: Bool = true
    ) -> SwitchVerdict {
        FailoverPolicy.serviceLossHandover(
            inputs, enabled: enabled, tieBreakersConfigured: configured, peerReachesTieBreaker: peerReaches, peerHasEveryCommit: inSync)
    }

    static func with(_ change: (inout SwitchingInputs) -> Void) -> SwitchingInputs {
        var inputs = cutOff
        change(&inputs)
        return inputs
    }

    @Test func handsOverOnlyWhenCutOffAndTheStandbyCanServe() {
        #expect(Self.verdict() == .proceed)
        #expect(Self.verdict(Self.with { $0.tieBreakerReachable = true }) == .refuse(.serviceNetworkUp))
        #expect(Self.verdict(enabled: false) == .refuse(.serviceLossHandoverOff))
        #expect(Self.verdict(configured: false) == .refuse(.serviceLossHandoverOff))
        #expect(Self.verdict(peerReaches: false) == .refuse(.peerCutOffToo))
        #expect(Self.verdict(inSync: false) == .refuse(.peerNotInSync))
        #expect(Self.verdict(Self.with { $0.hasDatabase = false }, inSync: false) == .proceed)
        #expect(Self.verdict(Self.with { $0.maintenance = true }) == .refuse(.maintenance))
        #expect(Self.verdict(Self.with { $0.autoFailover = false }) == .refuse(.autoFailoverOff))
        #expect(Self.verdict(Self.with { $0.effectorBusy = true }) == .refuse(.effectorBusy))
        #expect(Self.verdict(Self.with { $0.role = .standby }) == .refuse(.notActive(.standby)))
        #expect(Self.verdict(Self.with { $0.role = .releasing }) == .refuse(.notActive(.releasing)))
        for state in [PeerState.late, .dead, .unknown] {
            #expect(Self.verdict(Self.with { $0.peerState = state }) != .proceed, "\(state)")
        }
        #expect(Self.verdict(Self.with { $0.peerRole = .active }) != .proceed)
        #expect(Self.verdict(Self.with { $0.peerRole = nil }) != .proceed)
    }

    /// Exhaustive over the booleans: it proceeds in exactly one combination (with a database).
    @Test func exactlyOneCombinationProceeds() {
        var proceeding = 0
        for bits in 0..<(1 << 7) {
            func bit(_ n: Int) -> Bool { bits & (1 << n) != 0 }
            let inputs = Self.with {
                $0.tieBreakerReachable = bit(0)
                $0.maintenance = bit(1)
                $0.autoFailover = bit(2)
                $0.effectorBusy = bit(3)
            }
            if Self.verdict(inputs, enabled: bit(4), peerReaches: bit(5), inSync: bit(6)) == .proceed { proceeding += 1 }
        }
        #expect(proceeding == 1)
    }

    @Test func refusalsSayWhy() {
        #expect(SwitchRefusal.peerCutOffToo.description.contains("tie-breaker"))
        #expect(SwitchRefusal.peerNotInSync.description.contains("acknowledged transactions"))
        #expect(SwitchRefusal.notActive(.standby).description == "this node is standby, not active")
    }
}

/// The standby's side of a handover, on a virtual clock.
@Suite struct AcceptHandover {
    static let grace = Duration.milliseconds(500)

    static func step(replayed: UInt64?, final: UInt64 = 1000, sync: Bool, waited: Duration) -> FailoverPolicy.HandoverStep {
        FailoverPolicy.acceptHandover(replayed: replayed, finalLSN: final, peerHadEveryCommit: sync, waited: waited, grace: grace)
    }

    @Test func theFinalLSNReplayedIsAlwaysEnough() {
        #expect(Self.step(replayed: 1000, sync: false, waited: .zero) == .takeOver)
        #expect(Self.step(replayed: 1200, sync: true, waited: .zero) == .takeOver)
    }

    @Test func withoutItOnlyASynchronousStandbyGoesOnAndOnlyAfterTheGrace() {
        #expect(Self.step(replayed: 900, sync: true, waited: .milliseconds(499)) == .wait)
        #expect(Self.step(replayed: 900, sync: true, waited: .milliseconds(500)) == .takeOverWithoutFinalLSN)
        #expect(Self.step(replayed: 900, sync: false, waited: .seconds(3600)) == .wait)
    }

    @Test func anUnknownReplayPositionWaits() {
        #expect(Self.step(replayed: nil, sync: true, waited: .seconds(10)) == .wait)
    }
}

/// A switchover's precondition on the active node.
@Suite struct HandoverPrecondition {
    @Test func theStandbyMustStreamAndBeCloseEnough() {
        #expect(FailoverPolicy.handover(hasDatabase: true, walSenderState: "streaming", lagBytes: 10, maxLagBytes: 100) == nil)
        #expect(FailoverPolicy.handover(hasDatabase: true, walSenderState: "streaming", lagBytes: 100, maxLagBytes: 100) == nil)
        #expect(FailoverPolicy.handover(hasDatabase: true, walSenderState: "streaming", lagBytes: 101, maxLagBytes: 100)
            == .standbyBehind(bytes: 101, limit: 100))
        #expect(FailoverPolicy.handover(hasDatabase: true, walSenderState: "catchup", lagBytes: 0, maxLagBytes: 100)
            == .standbyNotStreaming("catchup"))
        #expect(FailoverPolicy.handover(hasDatabase: true, walSenderState: nil, lagBytes: 0, maxLagBytes: 100)
            == .standbyNotStreaming("not connected"))
        #expect(FailoverPolicy.handover(hasDatabase: false, walSenderState: nil, lagBytes: 0, maxLagBytes: 0) == nil)
        #expect(SwitchRefusal.standbyNotStreaming("not connected").description.hasPrefix("the standby's replication is not connected"))
    }
}
