// Synchronous replication that does not stop the service, seen from kusu-hbd: on the active
// node the ReplicationGuard (ClusterCore, pure) decides what the primary's commits wait for and
// the effector applies it (SetSynchronousStandby); the heartbeats tell the standby whether it
// has every acknowledged transaction, and the standby refuses an automatic failover when not.
import ClusterAPI
import ClusterCore
import DBusKit
import FileSync
import Logging

extension HeartbeatMonitor {
    /// This node is active and its database is the primary.
    var isActivePrimary: Bool { role == .active && effector.reachable && effector.databaseRole == "primary" }

    /// The peer's replication connection as the primary reports it, if it is a live one: not
    /// while the peer is dead, and not one silent since before the peer came back (a crashed
    /// standby's connection stays "streaming" on the primary until wal_sender_timeout; a live
    /// standby replies at least every wal_receiver_status_interval).
    var liveWalSenderState: String? {
        guard tracker.state != .dead, let state = effector.replicationState else { return nil }
        guard effector.replicationLastReplyUSec >= peerBackSinceUSec else { return nil }
        return state
    }

    /// What the heartbeats say to the peer: our primary waits for its standby on every commit.
    var peerHasEveryCommit: Bool {
        guard let replicationGuard else { return false }
        if role == .active, effector.reachable, effector.databaseRole == "unknown" || effector.databaseRole == "down",
            let last = effector.lastPrimary
        {
            // The primary does not answer (hung) or is down: it acknowledges nothing now, so
            // what it last said stands (a restarted one is read again before it counts).
            return replicationGuard.peerHasEveryCommit(
                activePrimary: true, synchronousStandbyNames: last.synchronousStandbyNames, syncState: last.syncState,
                walSenderState: last.liveWalSenderState)
        }
        guard let names = effector.synchronousStandbyNames else { return false }
        return replicationGuard.peerHasEveryCommit(
            activePrimary: isActivePrimary, synchronousStandbyNames: names, syncState: effector.syncState,
            walSenderState: liveWalSenderState, at: MonotonicInstant(loop.now))
    }

    /// The Synchronous property: "sync" (commits wait for the standby), "async" (the standby
    /// streams but commits do not wait for it: degraded), "none" (no standby connected and commits
    /// do not wait), "waiting" (strict: commits wait for a standby that is not there), "off"
    /// (not managed, or no database), "unknown". On the standby: "sync" when the active peer
    /// said it waits for us, "async" otherwise.
    var synchronousState: String {
        guard let replicationGuard, replicationGuard.mode != .off else { return "off" }
        switch role {
        case .active:
            guard effector.reachable, effector.databaseRole == "primary", let names = effector.synchronousStandbyNames else { return "unknown" }
            // A dead peer's connection can linger on the primary (no FIN from a crashed node)
            // until wal_sender_timeout: it does not count as a connected standby.
            let connected = liveWalSenderState != nil
            if replicationGuard.peerHasEveryCommit(
                activePrimary: true, synchronousStandbyNames: names, syncState: effector.syncState,
                walSenderState: connected ? effector.replicationState : nil, at: MonotonicInstant(loop.now))
            {
                return connected ? "sync" : "waiting"
            }
            return connected ? "async" : "none"
        case .standby:
            guard tracker.peerRole == .active else { return "unknown" }
            return tracker.peerWaitsForUs ? "sync" : "async"
        default:
            return "unknown"
        }
    }

    /// Decides and applies what commits wait for (active node only), and signals Synchronous changes.
    func evaluateReplication() {
        defer {
            let state = synchronousState
            if state != lastSynchronous {
                if !lastSynchronous.isEmpty {
                    let degraded = ["async", "none"].contains(state) && role == .active
                    logger.notice(
                        "synchronous replication state changed",
                        metadata: [
                            "pg.sync.old": "\(lastSynchronous)", "pg.sync": "\(state)", "peer.name": "\(configuration.peerNode.name)",
                            "message.id": "\(degraded ? MessageID.replicationDegraded : MessageID.replicationSynchronous)",
                        ])
                }
                lastSynchronous = state
                changed(Heartbeat1.Property.synchronous)
            }
        }
        guard var replicationGuard, !settingSynchronous, let names = effector.synchronousStandbyNames else { return }
        let observation = ReplicationGuard.Observation(
            walSenderState: liveWalSenderState, lagBytes: effector.lagBytes, synchronousStandbyNames: names)
        let decision = replicationGuard.decide(
            activePrimary: isActivePrimary, peerState: tracker.state, observation: observation, now: MonotonicInstant(loop.now))
        self.replicationGuard = replicationGuard
        let value: String
        let reason: String
        switch decision {
        case .keep: return
        case .require(let setting, let why): (value, reason) = (setting, why)
        case .release(let why): (value, reason) = ("", why)
        }
        guard !effector.busy else { return }  // asked again at the next poll
        settingSynchronous = true
        logger.notice("changing what commits wait for", metadata: ["pg.synchronous_standby_names": "\(value)", "reason": "\(reason)"])
        callEffector(Effector1.Method.setSynchronousStandby, [.string(value)], timeout: .seconds(30)) { [unowned self] result in
            settingSynchronous = false
            switch result {
            case .success:
                effector.synchronousStandbyNames = value
                if value.isEmpty { effector.syncState = effector.syncState == "sync" ? "async" : effector.syncState }
            case .failure(let error):
                logger.error("cannot change what commits wait for", metadata: ["error": "\(error.message)"])
            }
            evaluateReplication()
        }
    }

    /// The FailoverReadiness property: whether an automatic failover onto this node would go
    /// ahead if the peer died now, and why not.
    var failoverReadiness: (ready: Bool, reason: String) {
        guard role == .standby else { return (false, "this node is \(role.rawValue), not standby") }
        var inputs = switchingInputs
        inputs.peerState = .dead
        inputs.tieBreakerReachable = tieBreaker?.reachable ?? configuration.cluster.tieBreakers.isEmpty
        switch FailoverPolicy.automatic(inputs) {
        case .proceed: return (true, "")
        case .refuse(let refusal): return (false, refusal.description)
        }
    }
}

// MARK: File trees

/// One `[[sync]]` tree as the FileSync property shows it.
struct FileSyncEntry {
    var path: String
    var state: String
    var lastSuccessUSec: UInt64 = 0
    var lastAttemptUSec: UInt64 = 0
    var sinceUSec: UInt64 = 0
    var message: String = ""
}

extension HeartbeatMonitor {
    /// Every configured tree, as kusu-ha-sync.service last reported it in its status file
    /// (read on each Get: a few hundred bytes). A tree the file does not list (the puller
    /// is not running, or not since boot) is "unknown" with the reason.
    var fileSyncEntries: [FileSyncEntry] {
        guard !configuration.sync.isEmpty else { return [] }
        let status: FileSyncStatus
        do {
            status = try FileSyncStatus.read()
        } catch {
            let why = error.missing
                ? "kusu-ha-sync.service has not reported since boot (is it running?)"
                : "cannot read the puller's status: \(error)"
            return configuration.sync.map { FileSyncEntry(path: $0.path, state: "unknown", message: why) }
        }
        return configuration.sync.map { tree in
            guard let reported = status[tree.path] else {
                return FileSyncEntry(path: tree.path, state: "unknown", message: "not in the puller's status (restart kusu-ha-sync.service)")
            }
            return FileSyncEntry(
                path: tree.path, state: reported.state.rawValue, lastSuccessUSec: reported.lastSuccessUSec,
                lastAttemptUSec: reported.lastAttemptUSec, sinceUSec: reported.sinceUSec, message: reported.message)
        }
    }
}
