// kusu-hbd's switching: it decides (ClusterCore.FailoverPolicy, RoleMachine) and asks
// kusu-effectord to act over D-Bus (authorised by polkit for the user kusu-ha).
//
// - Automatic failover: when the peer becomes dead (or a switch changes while it is dead),
//   the policy is asked; on "proceed" the epoch is raised and persisted, then Takeover is
//   called on the effector. A refusal is logged once, with its reason.
// - Two actives that hear each other: the one that should yield (lower epoch, then lower
//   priority) releases at once.
// - Manual Takeover(force), SetAutoFailover, SetMaintenance: authorised by polkit first.
import ClusterAPI
import ClusterCore
import DBusKit
import Logging
import SystemSupport

extension HeartbeatMonitor {

    /// The inputs of a decision, as known now.
    var switchingInputs: SwitchingInputs {
        let database = configuration.database
        var lag: UInt64?
        if let local = effector.lsn, effector.reachable {
            lag = tracker.peerLSN > local ? tracker.peerLSN - local : 0
        }
        var tieBreakerReachable = reachesTieBreaker
        if tracker.state == .dead, let tieBreaker {
            // Only an answer to a ping sent after the peer fell silent shows that this node's
            // own network still worked then; an older one may predate our own isolation.
            tieBreakerReachable = tieBreaker.answered(since: tracker.lastSeen?.sinceOrigin ?? .zero)
        }
        var inSync = database.map { $0.synchronous == .off ? nil : tracker.peerWaitsForUs } ?? nil
        if handoverLSN != nil || reclaimAt != nil {
            // This node handed over and stopped its database at the final LSN, and the peer has
            // not taken over (it would be active): nothing newer exists anywhere. If the peer
            // dies now, taking the role back loses nothing.
            lag = 0
            if inSync != nil { inSync = true }
        }
        return SwitchingInputs(
            role: role, peerState: tracker.state, peerRole: tracker.peerRole, autoFailover: autoFailover,
            maintenance: maintenance, tieBreakerReachable: tieBreakerReachable,
            hasDatabase: database != nil, lagBytes: lag, maxLagBytes: database?.maxLagBytes ?? 0,
            effectorBusy: effector.busy, inSync: inSync)
    }

    /// Whether the standby could take over in a switchover now (asked on the active node).
    var handoverRefusal: SwitchRefusal? {
        FailoverPolicy.handover(
            hasDatabase: configuration.database != nil, walSenderState: liveWalSenderState, lagBytes: effector.lagBytes,
            maxLagBytes: configuration.database?.maxLagBytes ?? 0)
    }

    // MARK: Automatic failover

    /// Decides whether to become active now: automatic failover when the peer is dead, the
    /// startup election when both nodes are standby and hear each other.
    func evaluateAutomatic() {
        guard role == .standby, tracker.state == .dead || tracker.state == .alive else {
            lastAutomaticRefusal = nil
            return
        }
        let peerName = configuration.peerNode.name
        let verdict: SwitchVerdict
        let reason: String
        if tracker.state == .dead {
            verdict = FailoverPolicy.automatic(switchingInputs)
            reason = "peer \(peerName) dead on every link"
        } else if tracker.peerHandover && tracker.peerRole == .standby {
            // Switchover: the peer stopped cleanly at its final LSN; take over once it is replayed.
            return followHandover()
        } else if gaveRoleBackAtLSN != nil {
            // This node gave back the role it failed to take over: the peer takes it back, and
            // this node's promoted database (the newer one, by the election's rule) must not win.
            return refuse(.notElected("this node's takeover failed and it gave the role back: the peer takes it back"))
        } else if handoverSynchronous != nil {
            // This node is handing the role over (released; its database is being stopped): the
            // peer takes over, or the role is taken back if it does not (checkHandoverProgress).
            // No election meanwhile, though both nodes are standby and this database still primary.
            lastAutomaticRefusal = nil
            return
        } else {
            let local = configuration.localNode
            let peer = configuration.peerNode
            verdict = FailoverPolicy.startup(
                switchingInputs, localDatabaseRole: configuration.database == nil ? nil : effector.databaseRole,
                local: (roles.epoch, local.priority, local.name), peer: (tracker.peerEpoch, peer.priority, peer.name))
            reason = "elected at startup: both nodes standby, this one holds the primary database or has precedence"
        }
        switch verdict {
        case .proceed where tracker.state == .dead && !configuration.addresses.isEmpty:
            // The peer is silent on every heartbeat link; before claiming its addresses, ask
            // the service network whether they are still in use.
            guard !probing else { return }
            switch earlyProbe?.verdict(lastSeen: tracker.lastSeen?.sinceOrigin ?? .zero, now: loop.now, freshFor: configuration.cluster.dead) {
            case .pending?: return  // its completion evaluates again
            case .free?:
                earlyProbe = nil
                return fenceThenTakeOver(reason)
            case .probeAgain?, nil: earlyProbe = nil
            }
            probing = true
            probeAddresses(configuration.addresses[...]) { [unowned self] refusal in
                probing = false
                guard role == .standby, tracker.state == .dead else { return }
                if let refusal {
                    refuse(refusal)
                    // The peer may give the address up (or die on the service network too): look again.
                    reevaluation = try? loop.addTimer(at: loop.now + .seconds(1)) { [unowned self] in evaluateAutomatic() }
                } else {
                    fenceThenTakeOver(reason)
                }
            }
        case .proceed:
            if tracker.state == .dead { fenceThenTakeOver(reason) } else { takeOver(reason) }
        case .refuse(let refusal):
            refuse(refusal)
        }
    }

    /// The peer turned late: probe the addresses now, so that if it is declared dead the
    /// takeover need not wait for the probe (about 110 ms: a 100 ms wait for an answer).
    func startEarlyAddressProbe() {
        guard role == .standby, autoFailover, !maintenance, !configuration.addresses.isEmpty else { return }
        earlyProbeCount += 1
        let id = earlyProbeCount
        earlyProbe = EarlyProbe(id: id, startedAt: loop.now)
        probeAddresses(configuration.addresses[...]) { [unowned self] refusal in
            guard earlyProbe?.id == id else { return }  // the peer came back meanwhile, or a newer one runs
            earlyProbe?.result = .some(refusal)
            if tracker.state == .dead { evaluateAutomatic() }
        }
    }

    /// With `[fencing]` configured, the command must succeed before the takeover; a failure
    /// is a refusal, tried again after 5 s.
    func fenceThenTakeOver(_ reason: String) {
        guard let command = configuration.fencingCommand else { return takeOver(reason) }
        probing = true
        logger.notice("fencing the peer", metadata: ["peer.name": "\(configuration.peerNode.name)", "fence.command": "\(command.joined(separator: " "))"])
        do {
            try loop.perform({ Fencing.run(command, timeout: .seconds(60)) }) { [unowned self] failure in
                probing = false
                guard role == .standby, tracker.state == .dead else { return }
                if let failure {
                    refuse(.fencingFailed(failure))
                    reevaluation = try? loop.addTimer(at: loop.now + .seconds(5)) { [unowned self] in evaluateAutomatic() }
                } else {
                    logger.notice("peer fenced", metadata: ["peer.name": "\(configuration.peerNode.name)", "message.id": "\(MessageID.fenced)"])
                    takeOver(reason)
                }
            }
        } catch {
            probing = false
            refuse(.fencingFailed("cannot start a thread: \(error)"))
        }
    }

    /// `afterHandover`: this takeover completes the peer's handover (see RoleMachine.Action.takeover).
    func takeOver(_ reason: String, afterHandover: Bool = false) {
        lastAutomaticRefusal = nil
        gaveRoleBackAtLSN = nil
        stoppedCleanlyInHandover = false
        followedAt = nil
        if handoverLSN != nil || reclaimAt != nil {
            // The peer was lost (declared dead, or it did not take over in time) after this
            // node handed over.
            takingBack = true
            handoverLSN = nil
            handoverSynchronous = nil
            reclaimAt = nil
        }
        logger.notice(
            tracker.state == .dead ? "automatic failover" : "startup election won",
            metadata: ["peer.name": "\(configuration.peerNode.name)", "node.epoch": "\(roles.epoch)"])
        execute(roles.beginTakeover(peerEpoch: tracker.peerEpoch, reason: reason, afterHandover: afterHandover))
    }

    func refuse(_ refusal: SwitchRefusal) {
        if tracker.state == .dead, refusal == .tieBreakerUnreachable {
            // Look again shortly: the next answer (or the next round) may come at any moment.
            reevaluation = try? loop.addTimer(at: loop.now + .milliseconds(250)) { [unowned self] in evaluateAutomatic() }
        }
        guard refusal != lastAutomaticRefusal else { return }
        lastAutomaticRefusal = refusal
        let peerName = configuration.peerNode.name
        if tracker.state == .dead {
            logger.warning(
                "no automatic failover", metadata: ["peer.name": "\(peerName)", "reason": "\(refusal)", "message.id": "\(refusalMessageID(refusal))"])
        } else {
            logger.info("not elected to be active", metadata: ["peer.name": "\(peerName)", "reason": "\(refusal)"])
        }
    }

    /// ProbeAddress on the effector for each address in turn; the first one in use (or a
    /// failed probe) is the refusal, nil when none answers.
    func probeAddresses(_ addresses: ArraySlice<FloatingAddress>, completion: @escaping (SwitchRefusal?) -> Void) {
        guard let address = addresses.first else { return completion(nil) }
        callEffector(Effector1.Method.probeAddress, [.string("\(address)")], timeout: .seconds(5)) { [unowned self] result in
            switch result {
            case .success(let values) where values.first?.bool == true:
                completion(.addressInUse(address: "\(address.address)", mac: values.dropFirst().first?.string ?? "?"))
            case .success:
                probeAddresses(addresses.dropFirst(), completion: completion)
            case .failure(let error):
                completion(.probeFailed(error.message))
            }
        }
    }

    /// After a failed rejoin, the next try (the peer's database may be out of reach for a while,
    /// e.g. while this node's service network is cut).
    static let rejoinRetry = Duration.seconds(10)

    /// After a failover, a stale primary (or stopped database) rejoins as a standby of the
    /// active peer, once at a time; a failure is retried after `rejoinRetry`.
    func evaluateRejoin() {
        guard !rejoining, loop.now >= nextRejoinAttempt else { return }
        let streams = effector.databaseRole == "standby" && effector.replicationState == "streaming"
        if streams { followedAt = nil }
        if FailoverPolicy.follow(switchingInputs, localDatabaseRole: effector.databaseRole, stoppedCleanlyInHandover: stoppedCleanlyInHandover)
            == .proceed
        {
            return followPeer()
        }
        let followedFor = streams ? nil : followedAt.map { loop.now - $0 }
        guard FailoverPolicy.rejoin(switchingInputs, localDatabaseRole: effector.databaseRole, followedWithoutStreamingFor: followedFor)
            == .proceed
        else { return }
        followedAt = nil
        rejoining = true
        let peer = configuration.peerNode.name
        logger.notice("rejoining the database as a standby", metadata: ["peer.name": "\(peer)", "pg.role": "\(effector.databaseRole ?? "?")"])
        callEffector(Effector1.Method.rejoinDatabase, [.string(peer)], timeout: .seconds(900)) { [unowned self] result in
            rejoining = false
            switch result {
            case .success:
                logger.notice("database rejoined as a standby", metadata: ["peer.name": "\(peer)"])
            case .failure(let error):
                nextRejoinAttempt = loop.now + Self.rejoinRetry
                logger.error("cannot rejoin the database", metadata: ["peer.name": "\(peer)", "error": "\(error.message)"])
            }
        }
    }

    /// The database stopped cleanly at the handover's final LSN, where the peer's timeline
    /// begins: it follows the peer as a standby without a copy (local work only: a peer that
    /// fails meanwhile cannot hold the effector busy, and the data stays intact).
    func followPeer() {
        stoppedCleanlyInHandover = false
        rejoining = true
        let peer = configuration.peerNode.name
        logger.notice("the database follows the peer as a standby (no copy: it stopped where the peer's timeline begins)", metadata: ["peer.name": "\(peer)"])
        callEffector(Effector1.Method.followDatabase, [.string(peer)], timeout: .seconds(120)) { [unowned self] result in
            rejoining = false
            switch result {
            case .success:
                followedAt = loop.now
            case .failure(let error):
                // It is a stopped database: the usual rejoin takes it from here.
                logger.warning("cannot make the database follow the peer", metadata: ["peer.name": "\(peer)", "error": "\(error.message)"])
            }
        }
    }

    /// A takeover of this node failed (role failed) while the peer is active and answers: give
    /// it up (release the units and addresses it may hold), so the database — which may have
    /// been promoted — rejoins the peer's as a standby (pg_rewind), and two primaries do not
    /// diverge silently.
    func evaluateFailedRole() {
        guard role == .failed, tracker.state == .alive, tracker.peerRole == .active, !effector.busy else { return }
        let peer = configuration.peerNode.name
        logger.notice(
            "the peer is active: giving up this node's failed takeover",
            metadata: ["peer.name": "\(peer)", "node.epoch": "\(roles.epoch)", "peer.epoch": "\(tracker.peerEpoch)"])
        execute(roles.beginRelease(reason: "\(peer) is active: this node's failed takeover is given up, its database rejoins"))
    }

    /// auto_failback: the preferred node, back as a caught-up standby, asks for a switchover.
    func evaluateFailback() {
        guard requestSwitchoverUntil == nil, switchoverCall == nil, handoverLSN == nil else { return }
        let verdict = FailoverPolicy.failback(
            switchingInputs, autoFailback: configuration.cluster.autoFailback,
            localPriority: configuration.localNode.priority, peerPriority: configuration.peerNode.priority,
            localDatabaseRole: configuration.database == nil ? nil : effector.databaseRole,
            localGaveUp: health.givenUp(at: MonotonicInstant(loop.now)))
        guard verdict == .proceed else { return }
        logger.notice("failback: asking the active peer for a switchover", metadata: ["peer.name": "\(configuration.peerNode.name)"])
        requestSwitchoverUntil = loop.now + .seconds(60)
    }

    /// Two active nodes hear each other: the one that should yield releases now.
    func resolveTwoActives() {
        guard role == .active || role == .takingOver, tracker.peerRole == .active || tracker.peerRole == .takingOver,
              tracker.state == .alive || tracker.state == .late
        else { return }
        let local = configuration.localNode
        let peer = configuration.peerNode
        guard FailoverPolicy.localYields(
            localEpoch: roles.epoch, localPriority: local.priority, localName: local.name,
            peerEpoch: tracker.peerEpoch, peerPriority: peer.priority, peerName: peer.name)
        else { return }
        let reason = "peer \(peer.name) is active with epoch \(tracker.peerEpoch) (ours \(roles.epoch)): yielding"
        logger.notice(
            "two active nodes: yielding",
            metadata: ["peer.epoch": "\(tracker.peerEpoch)", "node.epoch": "\(roles.epoch)", "message.id": "\(MessageID.yielding)"])
        execute(roles.beginRelease(reason: reason))
    }

    // MARK: Actions

    func execute(_ actions: [RoleMachine.Action], then done: ((Result<Void, DBusError>) -> Void)? = nil) {
        for action in actions {
            switch action {
            case .persistEpoch(let epoch):
                do {
                    try store.update { $0.epoch = epoch }
                } catch {
                    logger.error("cannot persist the epoch", metadata: ["node.epoch": "\(epoch)", "error": "\(error)"])
                    // Persisted before anything else happens, or the takeover does not happen.
                    // (Refused like a failed fencing: tried again after 5 s.)
                    if actions.contains(where: { if case .takeover = $0 { true } else { false } }) {
                        execute(roles.epochNotPersisted())
                        let refusal = SwitchRefusal.epochNotPersisted("\(error)")
                        refuse(refusal)
                        reevaluation = try? loop.addTimer(at: loop.now + .seconds(5)) { [unowned self] in evaluateAutomatic() }
                        done?(.failure(.failed("takeover refused: \(refusal)")))
                        return
                    }
                }
                changed(Heartbeat1.Property.epoch)
            case .roleChanged(let old, let new, let reason):
                logger.notice(
                    "role changed",
                    metadata: [
                        "node.role.old": "\(old.rawValue)", "node.role": "\(new.rawValue)", "reason": "\(reason)",
                        "node.epoch": "\(roles.epoch)", "message.id": "\(MessageID.roleChanged)",
                    ])
                changed(Heartbeat1.Property.role)
                sendHeartbeats(rescheduling: false)
                do {
                    try bus.emitSignal(
                        path: path, interface: interface, member: MemberName(Heartbeat1.Signal.roleChanged),
                        [.string(old.rawValue), .string(new.rawValue), .string(reason)])
                } catch {
                    logger.error("cannot emit a signal", metadata: ["error": "\(error)"])
                }
                ServiceManager.notify("STATUS=\(new.rawValue) (epoch \(roles.epoch)); peer \(configuration.peerNode.name) is \(tracker.state.rawValue)")
                healthRoleChanged()
            case .takeover(let reason, let afterHandover):
                let member = afterHandover ? Effector1.Method.takeoverAfterHandover : Effector1.Method.takeover
                callEffector(member, reason: reason) { [unowned self] result in
                    if afterHandover, case .success = result {
                        // The old primary is waited for from the first commit: hold it as present while it rejoins.
                        replicationGuard?.holdAfterHandover(at: MonotonicInstant(loop.now))
                    }
                    let (succeeded, detail) = Self.outcome(result)
                    execute(roles.takeoverFinished(success: succeeded, detail: detail))
                    if afterHandover && !succeeded && role == .failed {
                        // The old primary is alive and waits to take the role back: give it back
                        // (release what this node may hold); its database rejoins afterwards.
                        gaveRoleBackAtLSN = tracker.peerLSN
                        logger.warning(
                            "the takeover completing the handover failed: giving the role back",
                            metadata: ["peer.name": "\(configuration.peerNode.name)", "error": "\(detail)"])
                        execute(roles.beginRelease(reason: "the takeover completing the handover failed: \(detail)"))
                    }
                    if takingBack {
                        takingBack = false
                        let peer = configuration.peerNode.name
                        finishSwitchover(.failure(.failed(
                            "the peer \(peer) did not take over (it was lost, or its takeover failed); this node took the active role back"
                                + (detail.isEmpty ? "" : ", and that failed: \(detail)"))))
                    } else if requestSwitchoverUntil != nil || switchoverCall != nil && role != .releasing {
                        requestSwitchoverUntil = nil
                        finishSwitchover(result)
                    }
                    done?(result)
                }
            case .release(let reason):
                callEffector(Effector1.Method.release, reason: reason) { [unowned self] result in
                    let (succeeded, detail) = Self.outcome(result)
                    execute(roles.releaseFinished(success: succeeded, detail: detail))
                    done?(result)
                }
            }
        }
    }

    /// An effector operation's outcome: from the reply's kind, never its text (an error reply may
    /// carry no message), with the error in words (its name when it has no message).
    static func outcome(_ result: Result<Void, DBusError>) -> (succeeded: Bool, detail: String) {
        guard case .failure(let error) = result else { return (true, "") }
        return (false, error.message.isEmpty ? error.name : error.message)
    }

    /// Calls Takeover/Release(reason) on the effector.
    func callEffector(_ member: String, reason: String, completion: @escaping (Result<Void, DBusError>) -> Void) {
        callEffector(member, [.string(reason)], timeout: .seconds(300)) { result in completion(result.map { _ in () }) }
    }

    // MARK: Pre-flight

    /// Whether `operation` would be allowed now, and why not.
    func preflight(_ operation: String) -> Result<(allowed: Bool, reason: String), DBusError> {
        let verdict: SwitchVerdict
        switch operation {
        case "takeover": verdict = FailoverPolicy.manualTakeover(switchingInputs, force: false)
        case "force-takeover": verdict = FailoverPolicy.manualTakeover(switchingInputs, force: true)
        case "automatic": verdict = FailoverPolicy.automatic(switchingInputs)
        case "service-fault":
            let readiness = serviceFaultReadiness
            return .success((readiness.ready, readiness.reason))
        case "switchover":
            if effector.busy { return .success((false, SwitchRefusal.effectorBusy.description)) }
            guard tracker.state == .alive else { return .success((false, "the peer is \(tracker.state)")) }
            switch (role, tracker.peerRole) {
            case (.active, .standby?):
                if let refusal = handoverRefusal { return .success((false, refusal.description)) }
                return .success((true, ""))
            case (.standby, .active?): return .success((true, ""))
            default:
                return .success((false, "this node is \(role.rawValue) and the peer \(tracker.peerRole?.rawValue ?? "unknown")"))
            }
        default:
            return .failure(.invalidArgs("unknown operation '\(operation)': use takeover, force-takeover, automatic, switchover or service-fault"))
        }
        switch verdict {
        case .proceed: return .success((true, ""))
        case .refuse(let refusal): return .success((false, refusal.description))
        }
    }

    // MARK: Switchover

    /// Switchover(), authorised: on the active node hand over now; on the standby ask the active
    /// peer (in heartbeats) to hand over. Answered when the peer (or this node) is active.
    func switchover(_ call: MethodInvocation) {
        guard switchoverCall == nil, handoverLSN == nil else {
            return call.fail(.failed("a switchover is already under way"))
        }
        guard tracker.state == .alive else {
            return call.fail(.failed("switchover refused: the peer is \(tracker.state); use takeover instead"))
        }
        guard !effector.busy else { return call.fail(.failed("switchover refused: \(SwitchRefusal.effectorBusy)")) }
        switch (role, tracker.peerRole) {
        case (.active, .standby?):
            if let refusal = handoverRefusal { return call.fail(.failed("switchover refused: \(refusal)")) }
            beginHandover(call: call)
        case (.standby, .active?):
            switchoverCall = call
            requestSwitchoverUntil = loop.now + .seconds(60)
            logger.notice("switchover requested from the active peer", metadata: ["peer.name": "\(configuration.peerNode.name)"])
        default:
            call.fail(.failed("switchover refused: this node is \(role.rawValue) and the peer \(tracker.peerRole?.rawValue ?? "unknown")"))
        }
    }

    /// Releases (units, addresses), stops the database cleanly and advertises its final LSN.
    /// `serviceLost`: the handover is made because this node's service network is cut, so the
    /// replication connections are ended first (a clean stop would otherwise wait for the cut
    /// standby to confirm the final WAL, up to wal_sender_timeout).
    /// `fault`: the handover is made because this node gave a resource up; when it is the
    /// database (it does not answer), it is killed rather than stopped cleanly.
    func beginHandover(call: MethodInvocation?, serviceLost: Bool = false, fault: (resource: String, isDatabase: Bool)? = nil) {
        switchoverCall = call
        // Said in heartbeats until the handover completes: while our primary waited for the
        // peer on every commit, the peer has every acknowledged transaction even if the final
        // LSN never reaches it.
        handoverSynchronous = peerHasEveryCommit
        let peer = configuration.peerNode.name
        let reason =
            if let fault { "\(fault.resource) failed here: handing over to \(peer)" }
            else if serviceLost { "service network lost: handing over to \(peer)" }
            else { "switchover to \(peer)" }
        execute(roles.beginRelease(reason: reason)) { [unowned self] result in
            if case .failure(let error) = result { return finishSwitchover(.failure(error)) }
            guard configuration.database != nil else {
                handoverLSN = 0
                return
            }
            if fault?.isDatabase == true { return killDatabaseForHandover() }
            guard serviceLost else { return stopDatabaseForHandover(followAfterwards: true) }
            callEffector(Effector1.Method.detachStandbys, timeout: .seconds(30)) { [unowned self] result in
                if case .failure(let error) = result {
                    // Not fatal: the stop then waits for the standby, up to wal_sender_timeout.
                    logger.warning("cannot end the replication connections", metadata: ["error": "\(error.message)"])
                }
                stopDatabaseForHandover()
            }
        }
    }

    /// StopDatabase, then the final LSN goes into our heartbeats. `followAfterwards`: the peer
    /// will replay that LSN (it streams; the switchover's precondition), so once it is active
    /// this database follows it without a copy.
    func stopDatabaseForHandover(followAfterwards: Bool = false) {
        let peer = configuration.peerNode.name
        callEffector(Effector1.Method.stopDatabase, timeout: .seconds(300)) { [unowned self] result in
            switch result {
            case .success(let values):
                stoppedCleanlyInHandover = followAfterwards
                handoverLSN = values.first?.uint64 ?? 0
                logger.notice(
                    "handing over at the final LSN",
                    metadata: ["pg.final_lsn": "\(handoverLSN ?? 0)", "peer.name": "\(peer)", "message.id": "\(MessageID.switchover)"])
            case .failure(let error):
                finishSwitchover(.failure(error))
            }
        }
    }

    /// KillDatabase (the database does not answer: it cannot stop cleanly), then the last known
    /// LSN goes into our heartbeats. The standby takes over once it replayed that far, or
    /// after the grace time, since our primary waited for it on every commit (the policy asks
    /// for that before a handover for the database). A hung server that cannot be killed
    /// acknowledges nothing either once the standby is promoted (every commit waits for it).
    func killDatabaseForHandover() {
        let peer = configuration.peerNode.name
        let lsn = effector.lastPrimary?.lsn ?? effector.lsn ?? 0
        func handOver() {
            handoverLSN = lsn
            logger.notice(
                "handing over at the last known LSN",
                metadata: ["pg.final_lsn": "\(lsn)", "peer.name": "\(peer)", "message.id": "\(MessageID.switchover)"])
        }
        callEffector(Effector1.Method.killDatabase, timeout: .seconds(150)) { [unowned self] result in
            if case .failure(let error) = result {
                logger.error("cannot kill the database; handing over anyway", metadata: ["error": "\(error.message)"])
            }
            handOver()
        }
    }

    /// The peer's role changed: a switchover may have completed.
    func switchoverProgress() {
        if tracker.peerRole == .active { gaveRoleBackAtLSN = nil }
        if handoverLSN != nil || reclaimAt != nil, tracker.peerRole == .active {
            handoverLSN = nil
            handoverSynchronous = nil
            reclaimAt = nil
            finishSwitchover(.success(()))
            evaluateRejoin()  // the database follows the new primary at once
        }
        if requestSwitchoverUntil != nil, tracker.peerRole == .standby || role == .active {
            requestSwitchoverUntil = nil
        }
        if handoverLSN != nil, tracker.peerRole == .failed || tracker.peerRole == .releasing {
            // The peer's takeover failed and it gives the role back: withdraw the handover and
            // take the role back now (the address probe waits for its release).
            logger.warning(
                "the peer's takeover failed: withdrawing the handover, taking the role back",
                metadata: ["peer.name": "\(configuration.peerNode.name)", "peer.role": "\(tracker.peerRole?.rawValue ?? "unknown")"])
            handoverLSN = nil
            reclaimAt = loop.now - configuration.cluster.dead
            checkHandoverProgress()
        }
    }

    /// How long the peer has to take over after this node handed over. A standby that streams
    /// within max_lag_bytes (the switchover's precondition) replays the final LSN in well
    /// under a second; one whose monitor or effector cannot act would leave nobody active.
    static let handoverTimeout = Duration.seconds(10)

    /// Once a second: a handover the peer has not completed in time is withdrawn (the
    /// heartbeats stop saying "handover"), and after the dead time, if the peer is still not
    /// taking over, this node takes the role back (the addresses probed first, as always).
    func checkHandoverProgress() {
        guard role == .standby else { return }
        let peerIdle = tracker.peerRole == .standby || tracker.peerRole == .failed
        if let at = handoverAt, reclaimAt == nil, peerIdle, tracker.state == .alive || tracker.state == .late,
           loop.now - at >= Self.handoverTimeout
        {
            logger.warning(
                "the peer did not take over: withdrawing the handover",
                metadata: ["peer.name": "\(configuration.peerNode.name)", "peer.role": "\(tracker.peerRole?.rawValue ?? "unknown")"])
            handoverLSN = nil
            reclaimAt = loop.now
            return
        }
        guard let since = reclaimAt, loop.now - since >= configuration.cluster.dead, !probing else { return }
        guard peerIdle || tracker.state == .dead else {
            // It did start taking over after all: let it.
            reclaimAt = nil
            handoverSynchronous = nil
            return
        }
        guard !configuration.addresses.isEmpty else {
            return takeOver("the peer \(configuration.peerNode.name) did not take over after the handover: taking the role back")
        }
        probing = true
        probeAddresses(configuration.addresses[...]) { [unowned self] refusal in
            probing = false
            guard role == .standby, reclaimAt != nil else { return }
            if let refusal {
                refuse(refusal)
            } else {
                takeOver("the peer \(configuration.peerNode.name) did not take over after the handover: taking the role back")
            }
        }
    }

    func finishSwitchover(_ result: Result<Void, DBusError>) {
        if case .failure(let error) = result {
            logger.error("switchover failed", metadata: ["error": "\(error.message)", "message.id": "\(MessageID.switchoverFailed)"])
            handoverLSN = nil
            handoverSynchronous = nil
        }
        guard let call = switchoverCall else { return }
        switchoverCall = nil
        switch result {
        case .success: call.reply()
        case .failure(let error): call.fail(error)
        }
    }

    // MARK: Operator requests (already authorised)

    func manualTakeover(_ call: MethodInvocation, force: Bool) {
        switch FailoverPolicy.manualTakeover(switchingInputs, force: force) {
        case .refuse(let refusal):
            call.fail(DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "takeover refused: \(refusal)"))
        case .proceed:
            let reason = force ? "forced takeover requested by an operator" : "takeover requested by an operator"
            execute(roles.beginTakeover(peerEpoch: tracker.peerEpoch, reason: reason)) { result in
                switch result {
                case .success: call.reply()
                case .failure(let error): call.fail(error)
                }
            }
        }
    }

    func setSwitch(_ call: MethodInvocation, autoFailover enabled: Bool? = nil, maintenance on: Bool? = nil) {
        do {
            try store.update { state in
                if let enabled { state.autoFailover = enabled }
                if let on { state.maintenance = on }
            }
        } catch {
            return call.fail(.failed("cannot persist the setting: \(error)"))
        }
        if let enabled, enabled != autoFailover {
            autoFailover = enabled
            changed(Heartbeat1.Property.autoFailover)
            logger.notice("automatic failover switched", metadata: ["ha.auto_failover": "\(enabled)"])
        }
        if let on, on != maintenance {
            maintenance = on
            changed(Heartbeat1.Property.maintenance)
            logger.notice("maintenance switched", metadata: ["ha.maintenance": "\(on)"])
        }
        call.reply()
        evaluateAutomatic()
        applyHealth([])  // maintenance off: a resource given up meanwhile is acted on now
    }
}

extension HeartbeatMonitor {
    /// A refused failover is logged with the fencing ID when fencing failed, the generic one otherwise.
    func refusalMessageID(_ refusal: SwitchRefusal) -> String {
        if case .fencingFailed = refusal { return MessageID.fencingFailed }
        return MessageID.failoverRefused
    }
}

/// An ARP probe of the floating addresses started when the peer turned late.
struct EarlyProbe {
    enum Verdict: Equatable {
        /// Still running: wait for it.
        case pending
        /// Nothing answered for any address, in a probe started after the peer's last heartbeat
        /// and recently enough: the addresses may be taken now.
        case free
        /// In use, failed, started too early or too long ago: probe again.
        case probeAgain
    }

    let id: UInt64
    /// loop.now when it started.
    let startedAt: Duration
    /// nil while running; then the refusal it found (nil inside: the addresses are free).
    var result: SwitchRefusal??

    /// What a takeover at `now` may make of it. `lastSeen`: the peer's last heartbeat;
    /// `freshFor`: how old a probe may be (the dead time: a probe started at "late" is younger).
    func verdict(lastSeen: Duration, now: Duration, freshFor: Duration) -> Verdict {
        guard let result else { return .pending }
        guard result == nil, startedAt > lastSeen, now - startedAt < freshFor else { return .probeAgain }
        return .free
    }
}
