// Handing over when the active node's service network is lost, and the standby's side of any
// handover.
//
// - Service loss (active node): none of its tie-breakers answers while the standby hears it on
//   a heartbeat link, reaches its own tie-breakers (heartbeat flag) and has every acknowledged
//   transaction. Clients cannot reach this node, so it hands over as in a switchover
//   (FailoverPolicy.serviceLossHandover decides; the replication connections are ended before
//   the database stops, so the stop does not wait for a standby it cannot reach).
// - Following a handover (standby): WaitForReplay on the effector until the peer's final LSN
//   is replayed, then take over. If it does not arrive within the grace time but the peer
//   said its primary waited for us on every commit, take over anyway
//   (FailoverPolicy.acceptHandover).
import ClusterAPI
import ClusterCore
import DBusKit
import Logging

extension HeartbeatMonitor {
    /// This node reaches one of its tie-breakers (true when none are configured).
    var reachesTieBreaker: Bool { tieBreaker?.reachable ?? configuration.cluster.tieBreakers.isEmpty }

    /// How long a standby waits for a handover's final LSN before it takes over without it
    /// (only when the peer waited for it on every commit). Over a working link the final WAL
    /// is replayed within milliseconds; a detached standby reconnects within its
    /// wal_retrieve_retry_interval.
    static let handoverGrace = Duration.milliseconds(500)

    // MARK: Service loss (active node)

    func evaluateServiceLoss() {
        guard role == .active, handoverLSN == nil, handoverSynchronous == nil, switchoverCall == nil else { return }
        let silent = tieBreaker?.silent(at: loop.now) ?? false
        switch serviceLossVerdict(tieBreakerReachable: !silent) {
        case .proceed:
            lastServiceLossRefusal = nil
            logger.notice(
                "service network lost: handing over to the standby",
                metadata: [
                    "peer.name": "\(configuration.peerNode.name)",
                    "ha.tie_breakers": "\(configuration.cluster.tieBreakers.map(\.description).joined(separator: ", "))",
                    "message.id": "\(MessageID.serviceLost)",
                ])
            beginHandover(call: nil, serviceLost: true)
        case .refuse(let refusal):
            // Worth a line only while this node is cut off: otherwise "reaches its tie-breakers"
            // (or the setting is off) is the normal state.
            guard silent, refusal != .serviceLossHandoverOff else {
                lastServiceLossRefusal = nil
                return
            }
            guard refusal != lastServiceLossRefusal else { return }
            lastServiceLossRefusal = refusal
            logger.warning(
                "the tie-breakers do not answer, but this node does not hand over",
                metadata: ["peer.name": "\(configuration.peerNode.name)", "reason": "\(refusal)"])
        }
    }

    /// The ServiceLossReadiness property: whether this active node would hand over if its
    /// tie-breakers fell silent now, and why not.
    var serviceLossReadiness: (ready: Bool, reason: String) {
        switch serviceLossVerdict(tieBreakerReachable: false) {
        case .proceed: return (true, "")
        case .refuse(let refusal): return (false, refusal.description)
        }
    }

    /// FailoverPolicy.serviceLossHandover on what this node knows now, with its own
    /// tie-breakers as given.
    func serviceLossVerdict(tieBreakerReachable: Bool) -> SwitchVerdict {
        var inputs = switchingInputs
        inputs.tieBreakerReachable = tieBreakerReachable
        return FailoverPolicy.serviceLossHandover(
            inputs, enabled: configuration.cluster.serviceLossHandover,
            tieBreakersConfigured: !configuration.cluster.tieBreakers.isEmpty,
            peerReachesTieBreaker: tracker.peerReachesTieBreaker, peerHasEveryCommit: peerHasEveryCommit)
    }

    // MARK: Following a handover (standby)

    /// The peer handed over (released, stopped its database at `tracker.peerLSN`): take over
    /// once that position is replayed here, or after the grace time if the peer's primary
    /// waited for us on every commit.
    func followHandover() {
        guard !waitingForReplay, role == .standby, loop.now >= handoverRetryAt else { return }
        let finalLSN = tracker.peerLSN
        // A handover this node took and gave back (its takeover failed): the peer takes it back.
        guard finalLSN != gaveRoleBackAtLSN else { return }
        let seen = handoverSeenAt ?? loop.now
        handoverSeenAt = seen
        guard configuration.database != nil else {
            return decideHandover(finalLSN: finalLSN, replayed: 0, seen: seen, retryAfterFailure: false)
        }
        let grace = Self.handoverGrace
        let waited = loop.now - seen
        // Up to the end of the grace time; after it (the peer did not say it waited for us) in
        // one-second steps, as long as the peer keeps handing over.
        let wait = waited < grace ? grace - waited : .seconds(1)
        let waitMs = UInt32(max(1, wait.wholeMilliseconds))
        waitingForReplay = true
        callEffector(Effector1.Method.waitForReplay, [.uint64(finalLSN), .uint32(waitMs)], timeout: wait + .seconds(5)) {
            [unowned self] result in
            waitingForReplay = false
            var replayed: UInt64?
            switch result {
            case .success(let values): replayed = values.dropFirst().first?.uint64
            case .failure(let error):
                logger.warning("cannot wait for the handover's final LSN", metadata: ["error": "\(error.message)"])
            }
            decideHandover(finalLSN: finalLSN, replayed: replayed, seen: seen, retryAfterFailure: replayed == nil)
        }
    }

    func decideHandover(finalLSN: UInt64, replayed: UInt64?, seen: Duration, retryAfterFailure: Bool) {
        // Heartbeats that arrived meanwhile may say the handover is over (the peer took the role
        // back): after a stall of this process (SIGSTOP, a long pause) they wait in the socket
        // while its handover packets look current. Read them all before acting.
        waitingForReplay = true  // (no new wait from the evaluations the packets trigger)
        drainHeartbeats()
        waitingForReplay = false
        guard role == .standby, tracker.peerHandover, tracker.peerRole == .standby, tracker.peerLSN == finalLSN else { return }
        let peer = configuration.peerNode.name
        let step = FailoverPolicy.acceptHandover(
            replayed: replayed, finalLSN: finalLSN, peerHadEveryCommit: tracker.peerWaitsForUs,
            waited: loop.now - seen, grace: Self.handoverGrace)
        switch step {
        case .takeOver:
            // After a clean stop the old primary follows within a moment: wait for it from the
            // first commit. (A killed database, or a final LSN that did not arrive, needs a rewind.)
            takeOver("switchover: \(peer) handed over at LSN \(formatLSN(finalLSN)), replayed", afterHandover: tracker.peerHandoverClean)
        case .takeOverWithoutFinalLSN:
            logger.warning(
                "taking over without the peer's final LSN",
                metadata: [
                    "peer.name": "\(peer)", "pg.final_lsn": "\(formatLSN(finalLSN))",
                    "pg.replayed_lsn": "\(formatLSN(replayed ?? 0))", "message.id": "\(MessageID.handoverWithoutFinalLSN)",
                ])
            takeOver(
                "switchover: \(peer) handed over at LSN \(formatLSN(finalLSN)); replayed \(formatLSN(replayed ?? 0)), "
                    + "and its primary waited for this standby on every commit")
        case .wait:
            // A failed call is not retried at once (the effector may be restarting); a plain
            // timeout is (the call itself waited).
            let delay: Duration = retryAfterFailure ? .seconds(1) : .zero
            handoverRetryAt = loop.now + delay  // (not at every heartbeat meanwhile)
            reevaluation = try? loop.addTimer(at: loop.now + delay) { [unowned self] in evaluateAutomatic() }
        }
    }
}
