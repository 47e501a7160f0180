import ClusterCore
import Testing

/// After a handover: the old primary follows the new one without a copy, and a follower that
/// does not stream is rejoined after a while; a takeover completing a handover says so.
@Suite struct FollowPolicyTests {
    func inputs(role: NodeRole = .standby, peerState: PeerState = .alive, peerRole: NodeRole? = .active, maintenance: Bool = false,
                autoFailover: Bool = true, busy: Bool = false) -> SwitchingInputs {
        SwitchingInputs(role: role, peerState: peerState, peerRole: peerRole, autoFailover: autoFailover, maintenance: maintenance,
                        effectorBusy: busy)
    }

    @Test func followsOnlyACleanlyStoppedDatabaseOfAHandoverNextToAnActivePeer() {
        #expect(FailoverPolicy.follow(inputs(), localDatabaseRole: "down", stoppedCleanlyInHandover: true) == .proceed)
        let refusals: [(SwitchingInputs, String?, Bool)] = [
            (inputs(), "down", false),
            (inputs(), "primary", true),
            (inputs(), "standby", true),
            (inputs(), nil, true),
            (inputs(role: .active), "down", true),
            (inputs(peerState: .dead), "down", true),
            (inputs(peerRole: .standby), "down", true),
            (inputs(maintenance: true), "down", true),
            (inputs(autoFailover: false), "down", true),
            (inputs(busy: true), "down", true),
        ]
        for (given, database, clean) in refusals {
            #expect(FailoverPolicy.follow(given, localDatabaseRole: database, stoppedCleanlyInHandover: clean) != .proceed,
                    "\(given) \(database ?? "nil") \(clean)")
        }
        var noDatabase = inputs()
        noDatabase.hasDatabase = false
        #expect(FailoverPolicy.follow(noDatabase, localDatabaseRole: "down", stoppedCleanlyInHandover: true) != .proceed)
    }

    @Test func aFollowerThatDoesNotStreamIsRejoinedAfterItsPatience() {
        #expect(FailoverPolicy.rejoin(inputs(), localDatabaseRole: "standby") != .proceed, "a standby has nothing to rejoin")
        #expect(FailoverPolicy.rejoin(inputs(), localDatabaseRole: "standby", followedWithoutStreamingFor: .seconds(9)) != .proceed)
        #expect(FailoverPolicy.rejoin(inputs(), localDatabaseRole: "standby", followedWithoutStreamingFor: .seconds(10)) == .proceed)
        #expect(FailoverPolicy.rejoin(inputs(busy: true), localDatabaseRole: "standby", followedWithoutStreamingFor: .seconds(60)) == .refuse(.effectorBusy))
        #expect(FailoverPolicy.rejoin(inputs(), localDatabaseRole: "primary") == .proceed)
        #expect(FailoverPolicy.rejoin(inputs(), localDatabaseRole: "down") == .proceed)
    }

    @Test func aTakeoverCompletingAHandoverSaysSo() {
        var machine = RoleMachine(epoch: 3)
        let actions = machine.beginTakeover(peerEpoch: 4, reason: "switchover", afterHandover: true)
        #expect(actions.last == .takeover(reason: "switchover", afterHandover: true))
        var plain = RoleMachine(epoch: 3)
        #expect(plain.beginTakeover(peerEpoch: 4, reason: "peer dead").last == .takeover(reason: "peer dead"))
    }

    @Test func aFailedTakeoverCanBeGivenUp() {
        var machine = RoleMachine(epoch: 3)
        _ = machine.beginTakeover(peerEpoch: 0, reason: "r")
        _ = machine.takeoverFinished(success: false, detail: "units failed")
        #expect(machine.role == .failed)
        #expect(machine.beginRelease(reason: "the peer is active").contains(.release(reason: "the peer is active")))
        _ = machine.releaseFinished(success: true, detail: "")
        #expect(machine.role == .standby)
    }
}
