import ClusterCore
import Testing

/// The active node's service-fault handover (`FailoverPolicy.serviceFaultHandover`): it gave a
/// resource up and hands over to a standby that can serve.
@Suite struct ServiceFaultPolicyTests {
    /// Every input of the decision that matters, as one value.
    struct Case: Sendable, CustomStringConvertible {
        var role: NodeRole = .active
        var enabled = true
        var maintenance = false
        var autoFailover = true
        var peerState: PeerState = .alive
        var peerRole: NodeRole? = .standby
        var peerGaveUpCause = false
        var peerReady = true
        var peerReachesTieBreaker = true
        var tieBreakersConfigured = true
        var hasDatabase = true
        var causeIsDatabase = false
        var peerHasEveryCommit = true
        var standbyRefusal: SwitchRefusal? = nil
        var effectorBusy = false

        var resource: String { causeIsDatabase ? "database" : "nginx.service" }

        /// Other resources the peer gave up, and the cause when `peerGaveUpCause`.
        var peerGaveUp: [String] { ["repository", "nginx"] + (peerGaveUpCause ? [resource] : []) }

        var inputs: SwitchingInputs {
            SwitchingInputs(
                role: role, peerState: peerState, peerRole: peerRole, autoFailover: autoFailover, maintenance: maintenance,
                hasDatabase: hasDatabase, effectorBusy: effectorBusy)
        }

        var verdict: SwitchVerdict {
            FailoverPolicy.serviceFaultHandover(
                inputs, enabled: enabled, cause: (resource: resource, isDatabase: causeIsDatabase), peerReady: peerReady,
                peerGaveUp: peerGaveUp, peerReachesTieBreaker: peerReachesTieBreaker,
                tieBreakersConfigured: tieBreakersConfigured, peerHasEveryCommit: peerHasEveryCommit,
                standbyRefusal: standbyRefusal)
        }

        /// The documented precedence, written out independently: the first failing condition
        /// in this list is the refusal.
        var expected: SwitchVerdict {
            let peerText = "the peer is \(peerState.rawValue), role \(peerRole?.rawValue ?? "unknown"): no standby to hand over to"
            let conditions: [(holds: Bool, refusal: SwitchRefusal)] = [
                (role == .active, .notActive(role)),
                (enabled, .serviceFaultHandoverOff),
                (!maintenance, .maintenance),
                (autoFailover, .autoFailoverOff),
                (peerState == .alive && peerRole == .standby, .noStandby(peerText)),
                (!peerGaveUpCause, .failedOnPeerToo(resource)),
                (peerReady, .peerNotReady),
                (peerReachesTieBreaker || !tieBreakersConfigured, .peerCutOff),
                (!hasDatabase || !causeIsDatabase || peerHasEveryCommit, .peerNotInSync),
                (!hasDatabase || causeIsDatabase || standbyRefusal == nil, standbyRefusal ?? .effectorBusy),
                (!effectorBusy, .effectorBusy),
            ]
            return conditions.first(where: { !$0.holds }).map { .refuse($0.refusal) } ?? .proceed
        }

        var description: String {
            "role \(role) enabled \(enabled) maintenance \(maintenance) auto \(autoFailover) peer \(peerState)/\(peerRole?.rawValue ?? "nil") "
                + "gaveUpCause \(peerGaveUpCause) ready \(peerReady) reaches \(peerReachesTieBreaker) configured \(tieBreakersConfigured) "
                + "db \(hasDatabase) dbCause \(causeIsDatabase) everyCommit \(peerHasEveryCommit) "
                + "standbyRefusal \(standbyRefusal.map { "\($0)" } ?? "nil") busy \(effectorBusy)"
        }
    }

    /// Calls `body` with every combination of the inputs that matter (5 roles × 4 peer states ×
    /// 6 peer roles × 2^12 switches).
    static func forEveryCase(_ body: (Case) -> Void) {
        let peerRoles: [NodeRole?] = [nil] + NodeRole.allCases.map(Optional.some)
        for role in NodeRole.allCases {
            for peerState in PeerState.allCases {
                for peerRole in peerRoles {
                    for bits in 0..<(1 << 12) {
                        func bit(_ n: Int) -> Bool { bits & (1 << n) != 0 }
                        var c = Case(role: role, peerState: peerState, peerRole: peerRole)
                        c.enabled = bit(0)
                        c.maintenance = bit(1)
                        c.autoFailover = bit(2)
                        c.peerGaveUpCause = bit(3)
                        c.peerReady = bit(4)
                        c.peerReachesTieBreaker = bit(5)
                        c.tieBreakersConfigured = bit(6)
                        c.hasDatabase = bit(7)
                        c.causeIsDatabase = bit(8)
                        c.peerHasEveryCommit = bit(9)
                        c.standbyRefusal = bit(10) ? .standbyNotStreaming("catchup") : nil
                        c.effectorBusy = bit(11)
                        body(c)
                    }
                }
            }
        }
    }

    @Test func decisionTableMatchesThePrecedence() {
        var count = 0
        var mismatches: [String] = []
        var proceeding = 0
        Self.forEveryCase { c in
            count += 1
            let verdict = c.verdict
            if verdict == .proceed { proceeding += 1 }
            if verdict != c.expected && mismatches.count < 10 {
                mismatches.append("\(c): got \(verdict), expected \(c.expected)")
            }
        }
        #expect(count == 5 * 4 * 6 * 4096)
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
        // It proceeds only when every guard passes: 3 of the 4 (reaches, configured) pairs, times
        // with a database 2 for a unit cause (every commit is free) + 2 for a database cause
        // (the standby refusal is free), without one 8 (cause kind, every commit, refusal).
        #expect(proceeding == 3 * (2 + 2 + 8))
    }

    /// Inputs that do not matter to this decision: this node's own tie-breaker, the local lag
    /// and sync state (those are the standby's failover inputs).
    @Test func irrelevantInputs() {
        let c = Case()
        for reachable in [false, true] {
            for lag in [nil, 0, UInt64.max] as [UInt64?] {
                for inSync in [nil, false, true] as [Bool?] {
                    var inputs = c.inputs
                    inputs.tieBreakerReachable = reachable
                    inputs.lagBytes = lag
                    inputs.inSync = inSync
                    inputs.maxLagBytes = 0
                    let verdict = FailoverPolicy.serviceFaultHandover(
                        inputs, enabled: true, cause: (resource: "nginx.service", isDatabase: false), peerReady: true,
                        peerGaveUp: [], peerReachesTieBreaker: true, tieBreakersConfigured: true, peerHasEveryCommit: true,
                        standbyRefusal: nil)
                    #expect(verdict == .proceed, "reachable \(reachable) lag \(String(describing: lag)) inSync \(String(describing: inSync))")
                }
            }
        }
    }

    // MARK: - Named examples

    static func verdict(_ change: (inout Case) -> Void) -> SwitchVerdict {
        var c = Case()
        change(&c)
        return c.verdict
    }

    static func verdict(
        resource: String = "nginx.service", isDatabase: Bool = false, peerGaveUp: [String] = [], hasDatabase: Bool = true,
        peerHasEveryCommit: Bool = true, standbyRefusal: SwitchRefusal? = nil
    ) -> SwitchVerdict {
        FailoverPolicy.serviceFaultHandover(
            SwitchingInputs(role: .active, peerState: .alive, peerRole: .standby, hasDatabase: hasDatabase), enabled: true,
            cause: (resource: resource, isDatabase: isDatabase), peerReady: true, peerGaveUp: peerGaveUp,
            peerReachesTieBreaker: true, tieBreakersConfigured: true, peerHasEveryCommit: peerHasEveryCommit,
            standbyRefusal: standbyRefusal)
    }

    @Test func handsOverWhenTheStandbyCanServe() {
        #expect(Self.verdict { _ in } == .proceed)
        #expect(Self.verdict() == .proceed)
    }

    @Test func theResourceFailedOnThePeerToo() {
        #expect(Self.verdict(peerGaveUp: ["nginx.service"]) == .refuse(.failedOnPeerToo("nginx.service")))
        #expect(Self.verdict(peerGaveUp: ["repository", "nginx.service"]) == .refuse(.failedOnPeerToo("nginx.service")))
        #expect(Self.verdict(resource: "database", isDatabase: true, peerGaveUp: ["database"]) == .refuse(.failedOnPeerToo("database")))
        #expect(Self.verdict(resource: "repository", peerGaveUp: ["repository"]) == .refuse(.failedOnPeerToo("repository")))
        // Exact names only: not a prefix, not another case.
        #expect(Self.verdict(peerGaveUp: ["nginx"]) == .proceed)
        #expect(Self.verdict(peerGaveUp: ["nginx.service.d"]) == .proceed)
        #expect(Self.verdict(peerGaveUp: ["NGINX.service"]) == .proceed)
        #expect(Self.verdict(peerGaveUp: ["apache2.service", "database"]) == .proceed)
        // Before the peer's readiness: the peer may say it is not ready because of that very resource.
        #expect(Self.verdict { $0.peerGaveUpCause = true; $0.peerReady = false } == .refuse(.failedOnPeerToo("nginx.service")))
    }

    @Test func theStandbyIsNotReadyOrCutOff() {
        #expect(Self.verdict { $0.peerReady = false } == .refuse(.peerNotReady))
        #expect(Self.verdict { $0.peerReachesTieBreaker = false } == .refuse(.peerCutOff))
        #expect(Self.verdict { $0.peerReachesTieBreaker = false; $0.tieBreakersConfigured = false } == .proceed)
        #expect(Self.verdict { $0.peerReady = false; $0.peerReachesTieBreaker = false } == .refuse(.peerNotReady))
    }

    @Test func theDatabaseAsCause() {
        // Hung or refusing: only a standby with every acknowledged commit may take over.
        #expect(Self.verdict(resource: "database", isDatabase: true, peerHasEveryCommit: false) == .refuse(.peerNotInSync))
        #expect(Self.verdict(resource: "database", isDatabase: true, peerHasEveryCommit: true) == .proceed)
        // The standby's streaming state does not count then (the primary cannot stop at a final LSN).
        #expect(Self.verdict(resource: "database", isDatabase: true, standbyRefusal: .standbyNotStreaming("catchup")) == .proceed)
        #expect(Self.verdict(resource: "database", isDatabase: true, peerHasEveryCommit: false,
                             standbyRefusal: .standbyNotStreaming("catchup")) == .refuse(.peerNotInSync))
    }

    @Test func aUnitAsCause() {
        // A switchover: the standby must stream within max_lag_bytes.
        #expect(Self.verdict(standbyRefusal: .standbyNotStreaming("catchup")) == .refuse(.standbyNotStreaming("catchup")))
        #expect(Self.verdict(standbyRefusal: .standbyBehind(bytes: 5_000_000, limit: 1_048_576))
                == .refuse(.standbyBehind(bytes: 5_000_000, limit: 1_048_576)))
        // Every commit does not matter then: the final LSN is replayed.
        #expect(Self.verdict(peerHasEveryCommit: false) == .proceed)
        // With the refusal as FailoverPolicy.handover computes it.
        let notConnected = FailoverPolicy.handover(hasDatabase: true, walSenderState: nil, lagBytes: 0, maxLagBytes: 1_048_576)
        #expect(Self.verdict(standbyRefusal: notConnected) == .refuse(.standbyNotStreaming("not connected")))
        let streaming = FailoverPolicy.handover(hasDatabase: true, walSenderState: "streaming", lagBytes: 10, maxLagBytes: 1_048_576)
        #expect(Self.verdict(standbyRefusal: streaming) == .proceed)
    }

    @Test func withoutADatabase() {
        #expect(Self.verdict(hasDatabase: false, standbyRefusal: .standbyNotStreaming("catchup")) == .proceed)
        #expect(Self.verdict(hasDatabase: false, peerHasEveryCommit: false) == .proceed)
        #expect(Self.verdict(resource: "repository", peerGaveUp: ["repository"], hasDatabase: false)
                == .refuse(.failedOnPeerToo("repository")))
    }

    @Test func theNodeAndThePair() {
        for role in NodeRole.allCases where role != .active {
            #expect(Self.verdict { $0.role = role } == .refuse(.notActive(role)), "\(role)")
        }
        #expect(Self.verdict { $0.enabled = false } == .refuse(.serviceFaultHandoverOff))
        #expect(Self.verdict { $0.maintenance = true } == .refuse(.maintenance))
        #expect(Self.verdict { $0.autoFailover = false } == .refuse(.autoFailoverOff))
        #expect(Self.verdict { $0.effectorBusy = true } == .refuse(.effectorBusy))
        // Precedence among them.
        #expect(Self.verdict { $0.role = .standby; $0.enabled = false } == .refuse(.notActive(.standby)))
        #expect(Self.verdict { $0.enabled = false; $0.maintenance = true } == .refuse(.serviceFaultHandoverOff))
        #expect(Self.verdict { $0.maintenance = true; $0.autoFailover = false } == .refuse(.maintenance))
        #expect(Self.verdict { $0.effectorBusy = true; $0.standbyRefusal = .standbyNotStreaming("catchup") }
                == .refuse(.standbyNotStreaming("catchup")))
    }

    @Test func thePeer() {
        #expect(Self.verdict { $0.peerState = .late }
                == .refuse(.noStandby("the peer is late, role standby: no standby to hand over to")))
        #expect(Self.verdict { $0.peerState = .dead }
                == .refuse(.noStandby("the peer is dead, role standby: no standby to hand over to")))
        #expect(Self.verdict { $0.peerRole = nil }
                == .refuse(.noStandby("the peer is alive, role unknown: no standby to hand over to")))
        #expect(Self.verdict { $0.peerRole = .active }
                == .refuse(.noStandby("the peer is alive, role active: no standby to hand over to")))
        #expect(Self.verdict { $0.peerRole = .takingOver }
                == .refuse(.noStandby("the peer is alive, role taking-over: no standby to hand over to")))
        #expect(Self.verdict { $0.peerRole = .failed; $0.peerGaveUpCause = true }
                == .refuse(.noStandby("the peer is alive, role failed: no standby to hand over to")))
    }

    // MARK: - Descriptions

    /// Every refusal the decision gives is a sentence an administrator can read.
    @Test func everyRefusalReadsAsASentence() {
        var refusals: [SwitchRefusal] = [.standbyBehind(bytes: 5_000_000, limit: 1_048_576)]
        Self.forEveryCase { c in
            if case .refuse(let refusal) = c.verdict, !refusals.contains(refusal) { refusals.append(refusal) }
        }
        // notActive × 4 roles, off, maintenance, auto off, noStandby × many, failed on peer × 2,
        // not ready, cut off, not in sync, not streaming, busy, plus standbyBehind.
        #expect(refusals.count > 15)
        for refusal in refusals {
            let text = refusal.description
            #expect(!text.isEmpty, "\(refusal)")
            #expect(text.contains(" "), "\(refusal): \(text)")
            #expect(text.first.map { !$0.isWhitespace } == true && text.last.map { !$0.isWhitespace } == true, "\(text)")
            #expect(!text.hasSuffix("."), "\(text)")  // the house style: no final period, like the others
        }
        #expect(SwitchRefusal.failedOnPeerToo("nginx.service").description.hasPrefix("nginx.service failed on the peer too"))
        #expect(SwitchRefusal.standbyNotStreaming("catchup").description.contains("catchup"))
        #expect(SwitchRefusal.serviceFaultHandoverOff.description == "[health] handover is off")
        #expect(SwitchRefusal.peerNotReady.description.contains("not ready"))
        #expect(SwitchRefusal.peerCutOff.description.contains("tie-breakers"))
        #expect(SwitchRefusal.peerNotInSync.description.contains("acknowledged transactions"))
    }
}
