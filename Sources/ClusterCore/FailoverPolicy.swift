/// kusu-hbd's switching decisions, as pure functions of what the node knows at one instant.
///
/// No clocks, no I/O: the shell samples the inputs (peer state from ``PeerTracker``, the
/// tie-breaker probe, the database lag read from the effector, the operator's switches) and
/// acts on the verdict. Every refusal says why, in words `kusu-ha` can show.

/// What the node knows when it decides.
public struct SwitchingInputs: Sendable, Equatable {
    public var role: NodeRole
    public var peerState: PeerState
    /// The peer's role as last heard (nil: never heard).
    public var peerRole: NodeRole?
    public var autoFailover: Bool
    public var maintenance: Bool
    /// The configured ping targets answer (true when none are configured).
    public var tieBreakerReachable: Bool
    /// Whether a `[database]` is configured.
    public var hasDatabase: Bool
    /// The peer's last advertised WAL LSN minus the local replayed LSN (nil: unknown).
    public var lagBytes: UInt64?
    public var maxLagBytes: UInt64
    /// The effector is running an operation.
    public var effectorBusy: Bool
    /// Whether the local standby had every acknowledged transaction as the active peer last
    /// said (its primary waited for us on every commit); nil when kusu-ha does not manage
    /// synchronous replication (`synchronous = "off"`), so only the lag counts.
    public var inSync: Bool?

    public init(
        role: NodeRole, peerState: PeerState, peerRole: NodeRole? = nil, autoFailover: Bool = true,
        maintenance: Bool = false, tieBreakerReachable: Bool = true, hasDatabase: Bool = true,
        lagBytes: UInt64? = 0, maxLagBytes: UInt64 = 1_048_576, effectorBusy: Bool = false, inSync: Bool? = nil
    ) {
        self.inSync = inSync
        self.role = role
        self.peerState = peerState
        self.peerRole = peerRole
        self.autoFailover = autoFailover
        self.maintenance = maintenance
        self.tieBreakerReachable = tieBreakerReachable
        self.hasDatabase = hasDatabase
        self.lagBytes = lagBytes
        self.maxLagBytes = maxLagBytes
        self.effectorBusy = effectorBusy
    }
}

/// Why a switch is not made now.
public enum SwitchRefusal: Equatable, Sendable, CustomStringConvertible {
    case notStandby(NodeRole)
    case peerAlive(PeerState)
    case peerNotDead(PeerState)
    case autoFailoverOff
    case maintenance
    case tieBreakerUnreachable
    case lagUnknown
    case lagTooHigh(bytes: UInt64, limit: UInt64)
    /// The active peer did not wait for the local standby (degraded synchronous replication):
    /// transactions it acknowledged may be missing here.
    case notInSync
    case effectorBusy
    /// Startup election: the other node should be the active one (why, in words).
    case notElected(String)
    /// An ARP probe found the floating address still in use: the active node is alive on the
    /// service network (only the heartbeat links are down).
    case addressInUse(address: String, mac: String)
    /// The floating address could not be probed.
    case probeFailed(String)
    /// The `[fencing]` command did not succeed.
    case fencingFailed(String)
    /// The epoch the takeover raised could not be written to stable storage.
    case epochNotPersisted(String)
    /// Service-loss handover: this node is not the active one.
    case notActive(NodeRole)
    /// Service-loss handover: `service_loss_handover = false`, or no tie-breakers to tell.
    case serviceLossHandoverOff
    /// Service-loss handover: this node reaches a tie-breaker, so its service network works.
    case serviceNetworkUp
    /// Service-loss handover: there is no standby peer that answers to hand over to.
    case noStandby(String)
    /// Service-loss handover: the standby cannot reach a tie-breaker either (the tie-breaker
    /// itself, or the whole service network, may be down): moving would not help.
    case peerCutOffToo
    /// Service-loss handover: the primary does not wait for the standby on every commit, so
    /// the standby may lack acknowledged transactions.
    case peerNotInSync
    /// Service-fault handover: `[health] handover = false`.
    case serviceFaultHandoverOff
    /// Service-fault handover: the peer gave this resource up too (its failures are not
    /// expired or cleaned up): the service stays where the rest of it runs.
    case failedOnPeerToo(String)
    /// Service-fault handover: the standby says its own copy of the service is not ready (its
    /// database does not answer or stream, or a unit could not start there).
    case peerNotReady
    /// Service-fault handover: the standby reaches none of its tie-breakers, so clients could
    /// not reach it either.
    case peerCutOff
    /// Switchover: the standby's replication connection is not streaming (its state, or "not
    /// connected"): it could not replay the final WAL position, and nobody would be active.
    case standbyNotStreaming(String)
    /// Switchover: the standby is this far behind the primary: it would replay for long before
    /// taking over, with nobody active meanwhile.
    case standbyBehind(bytes: UInt64, limit: UInt64)

    public var description: String {
        switch self {
        case .notStandby(let role): "this node is \(role), not standby"
        case .peerAlive(let state): "the peer is \(state); use force to take over anyway"
        case .peerNotDead(let state): "the peer is \(state), not dead on every link"
        case .autoFailoverOff: "automatic failover is off"
        case .maintenance: "the pair is in maintenance"
        case .tieBreakerUnreachable: "the tie-breaker does not answer: this node may be the one cut off"
        case .lagUnknown: "the local database's replication lag is unknown"
        case .lagTooHigh(let bytes, let limit): "the local database is \(bytes) bytes behind the peer (limit \(limit))"
        case .notInSync:
            "the local standby was not in sync with the peer's primary (asynchronous since it fell behind or went away): "
                + "acknowledged transactions may be missing here"
        case .effectorBusy: "the effector is busy with another operation"
        case .notElected(let why): why
        case .addressInUse(let address, let mac):
            "\(address) still answers from \(mac): the active node is alive on the service network"
        case .probeFailed(let why): "the floating address could not be probed: \(why)"
        case .fencingFailed(let why): "fencing the peer failed: \(why)"
        case .epochNotPersisted(let why): "the new epoch could not be written: \(why)"
        case .notActive(let role): "this node is \(role), not active"
        case .serviceLossHandoverOff: "service_loss_handover is off, or no tie_breakers are configured"
        case .serviceNetworkUp: "this node reaches its tie-breakers"
        case .noStandby(let why): why
        case .peerCutOffToo:
            "the peer does not reach its tie-breakers either: the tie-breaker or the whole service network may be down"
        case .peerNotInSync:
            "commits do not wait for the standby (replication is degraded or off): it may lack acknowledged transactions"
        case .serviceFaultHandoverOff: "[health] handover is off"
        case .failedOnPeerToo(let resource):
            "\(resource) failed on the peer too (its failures are not expired or cleaned up): the service stays here, where the rest of it runs"
        case .peerNotReady:
            "the standby says its own copy of the service is not ready (its database or a unit; see kusu-ha status on it)"
        case .peerCutOff: "the standby does not reach its tie-breakers: clients could not reach it either"
        case .standbyNotStreaming(let state):
            "the standby's replication is \(state), not streaming: it could not reach the final WAL position"
        case .standbyBehind(let bytes, let limit):
            "the standby is \(bytes) bytes behind (limit \(limit)): nobody would be active while it catches up"
        }
    }
}

public enum SwitchVerdict: Equatable, Sendable {
    case proceed
    case refuse(SwitchRefusal)
}

public enum FailoverPolicy {
    /// Automatic failover: the standby takes over only when the peer is dead on every link,
    /// automatic switching is on, the pair is not in maintenance, the tie-breaker answers,
    /// the database is close enough to what the peer last advertised, and the effector is free.
    /// (The shell then probes the floating address and runs fencing before it acts.)
    public static func automatic(_ inputs: SwitchingInputs) -> SwitchVerdict {
        guard inputs.role == .standby else { return .refuse(.notStandby(inputs.role)) }
        guard !inputs.maintenance else { return .refuse(.maintenance) }
        guard inputs.autoFailover else { return .refuse(.autoFailoverOff) }
        guard inputs.peerState == .dead else { return .refuse(.peerNotDead(inputs.peerState)) }
        guard inputs.tieBreakerReachable else { return .refuse(.tieBreakerUnreachable) }
        if let refusal = lagRefusal(inputs) { return .refuse(refusal) }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        return .proceed
    }

    /// An operator's `Takeover(force)`: refused while the peer is heard unless forced. Manual
    /// switching works in maintenance and with automatic failover off; force also overrides
    /// the tie-breaker and the lag (the operator takes responsibility).
    public static func manualTakeover(_ inputs: SwitchingInputs, force: Bool) -> SwitchVerdict {
        guard inputs.role == .standby || inputs.role == .failed else { return .refuse(.notStandby(inputs.role)) }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        if force { return .proceed }
        guard inputs.peerState == .dead else { return .refuse(.peerAlive(inputs.peerState)) }
        guard inputs.tieBreakerReachable else { return .refuse(.tieBreakerUnreachable) }
        if let refusal = lagRefusal(inputs) { return .refuse(refusal) }
        return .proceed
    }

    /// Startup election: both nodes are standby and hear each other, so one must become
    /// active. It is the node with the newer epoch; on equal epochs, with a database, the one
    /// whose database is the primary (no promotion happens here: a standby database never
    /// wins); without a database, the higher priority, then the earlier name. Respects
    /// maintenance and automatic switching like automatic failover.
    public static func startup(
        _ inputs: SwitchingInputs, localDatabaseRole: String?,
        local: (epoch: UInt64, priority: Int, name: String), peer: (epoch: UInt64, priority: Int, name: String)
    ) -> SwitchVerdict {
        guard inputs.role == .standby else { return .refuse(.notStandby(inputs.role)) }
        guard !inputs.maintenance else { return .refuse(.maintenance) }
        guard inputs.autoFailover else { return .refuse(.autoFailoverOff) }
        guard inputs.peerState == .alive, inputs.peerRole == .standby else {
            return .refuse(.notElected("the peer is \(inputs.peerState), role \(inputs.peerRole?.rawValue ?? "unknown"): no election"))
        }
        guard local.epoch >= peer.epoch else {
            return .refuse(.notElected("the peer has the newer epoch (\(peer.epoch) > \(local.epoch))"))
        }
        if inputs.hasDatabase {
            guard let role = localDatabaseRole else { return .refuse(.notElected("the local database's role is unknown")) }
            guard role == "primary" else { return .refuse(.notElected("the local database is \(role), not the primary")) }
        } else if local.epoch == peer.epoch {
            let wins = local.priority != peer.priority ? local.priority > peer.priority : local.name < peer.name
            guard wins else { return .refuse(.notElected("the peer has precedence (priority \(peer.priority))")) }
        }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        return .proceed
    }

    /// After a failover: this node is standby, the peer is active, and the local database is
    /// still a primary (stale: the peer's is the one serving) or down. Then the local database
    /// must rejoin as a standby of the peer (pg_rewind where the timelines diverged), so the pair
    /// is redundant again without hands. An automatic action: maintenance and auto-failover apply.
    ///
    /// `followedWithoutStreamingFor`: the local database was made to follow the peer without a
    /// copy (``follow(_:localDatabaseRole:stoppedCleanlyInHandover:)``) this long ago and does
    /// not stream (it diverged after all): once that is `followPatience` or more, it rejoins.
    public static func rejoin(
        _ inputs: SwitchingInputs, localDatabaseRole: String?, followedWithoutStreamingFor: Duration? = nil,
        followPatience: Duration = .seconds(10)
    ) -> SwitchVerdict {
        guard inputs.hasDatabase else { return .refuse(.notElected("no database is configured")) }
        guard inputs.role == .standby else { return .refuse(.notStandby(inputs.role)) }
        guard !inputs.maintenance else { return .refuse(.maintenance) }
        guard inputs.autoFailover else { return .refuse(.autoFailoverOff) }
        guard inputs.peerState == .alive, inputs.peerRole == .active else {
            return .refuse(.notElected("the peer is not an active node that answers"))
        }
        let stuckFollower = localDatabaseRole == "standby" && (followedWithoutStreamingFor.map { $0 >= followPatience } ?? false)
        guard let role = localDatabaseRole, role == "primary" || role == "down" || stuckFollower else {
            return .refuse(.notElected("the local database is \(localDatabaseRole ?? "unknown"): nothing to rejoin"))
        }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        return .proceed
    }

    /// After this node handed the active role over and stopped its database cleanly at the
    /// final LSN (a switchover, a failback, a handover for a failed unit or check), the peer's
    /// new timeline begins where this database ends: it becomes a standby of the peer without
    /// a copy and without talking to it (FollowDatabase), so it streams within a moment — and
    /// its data stays intact, so it can take the role back if the peer fails right away. A
    /// follower that diverged after all (the peer took over without the final LSN) does not
    /// stream and is rejoined later (``rejoin(_:localDatabaseRole:followedWithoutStreamingFor:followPatience:)``).
    public static func follow(_ inputs: SwitchingInputs, localDatabaseRole: String?, stoppedCleanlyInHandover: Bool) -> SwitchVerdict {
        guard inputs.hasDatabase else { return .refuse(.notElected("no database is configured")) }
        guard stoppedCleanlyInHandover else { return .refuse(.notElected("the local database did not stop cleanly in a handover")) }
        guard inputs.role == .standby else { return .refuse(.notStandby(inputs.role)) }
        guard !inputs.maintenance else { return .refuse(.maintenance) }
        guard inputs.autoFailover else { return .refuse(.autoFailoverOff) }
        guard inputs.peerState == .alive, inputs.peerRole == .active else {
            return .refuse(.notElected("the peer is not an active node that answers"))
        }
        guard localDatabaseRole == "down" else {
            return .refuse(.notElected("the local database is \(localDatabaseRole ?? "unknown"), not stopped"))
        }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        return .proceed
    }

    /// `auto_failback`: the preferred node (higher priority) came back as a standby whose
    /// database streams from the active peer and has caught up; it asks for a switchover,
    /// which moves the active role back without losing anything. Off by default.
    /// A node that gave a resource up (see ``ServiceHealth``; `localGaveUp`) does not ask for
    /// the role back until those failures expire or are cleaned up.
    public static func failback(
        _ inputs: SwitchingInputs, autoFailback: Bool, localPriority: Int, peerPriority: Int, localDatabaseRole: String?,
        localGaveUp: [String] = []
    ) -> SwitchVerdict {
        guard autoFailback else { return .refuse(.notElected("auto_failback is off")) }
        if let resource = localGaveUp.first {
            return .refuse(.notElected("\(resource) failed on this node: no failback until its failures expire or are cleaned up"))
        }
        guard inputs.role == .standby else { return .refuse(.notStandby(inputs.role)) }
        guard !inputs.maintenance else { return .refuse(.maintenance) }
        guard inputs.autoFailover else { return .refuse(.autoFailoverOff) }
        guard inputs.peerState == .alive, inputs.peerRole == .active else {
            return .refuse(.notElected("the peer is not an active node that answers"))
        }
        guard localPriority > peerPriority else { return .refuse(.notElected("the peer has the higher priority")) }
        if inputs.hasDatabase {
            guard localDatabaseRole == "standby" else {
                return .refuse(.notElected("the local database is \(localDatabaseRole ?? "unknown"), not a standby yet"))
            }
            if let refusal = lagRefusal(inputs) { return .refuse(refusal) }
        }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        return .proceed
    }

    /// Service-loss handover, on the active node: it reaches none of its tie-breakers (its
    /// service network is cut, so no client reaches it) while the standby hears it on a
    /// heartbeat link, reaches its own tie-breakers, and has every acknowledged transaction
    /// (the primary waits for it on every commit). Then the active node hands over as in a
    /// switchover, so the service moves to the node clients can reach. An automatic action:
    /// maintenance and automatic failover apply.
    public static func serviceLossHandover(
        _ inputs: SwitchingInputs, enabled: Bool, tieBreakersConfigured: Bool,
        peerReachesTieBreaker: Bool, peerHasEveryCommit: Bool
    ) -> SwitchVerdict {
        guard inputs.role == .active else { return .refuse(.notActive(inputs.role)) }
        guard enabled, tieBreakersConfigured else { return .refuse(.serviceLossHandoverOff) }
        guard !inputs.tieBreakerReachable else { return .refuse(.serviceNetworkUp) }
        guard !inputs.maintenance else { return .refuse(.maintenance) }
        guard inputs.autoFailover else { return .refuse(.autoFailoverOff) }
        guard inputs.peerState == .alive, inputs.peerRole == .standby else {
            return .refuse(.noStandby("the peer is \(inputs.peerState), role \(inputs.peerRole?.rawValue ?? "unknown"): no standby to hand over to"))
        }
        guard peerReachesTieBreaker else { return .refuse(.peerCutOffToo) }
        if inputs.hasDatabase, !peerHasEveryCommit { return .refuse(.peerNotInSync) }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        return .proceed
    }

    /// Service-fault handover, on the active node: it gave up a resource (`cause`; see
    /// ``ServiceHealth``) and hands over, as in a switchover, to a standby that answers, says
    /// its own copy of the service is ready, has not given up the same resource, reaches its
    /// tie-breakers, and can take the database over without losing anything. When the cause
    /// is the database itself (hung or refusing), it cannot be stopped cleanly at a final LSN:
    /// the standby must then have every acknowledged transaction (the primary waited for it on
    /// every commit); otherwise it must stream within `max_lag_bytes` (`standbyRefusal`, from
    /// ``handover(hasDatabase:walSenderState:lagBytes:maxLagBytes:)``). An automatic action:
    /// maintenance and automatic failover apply.
    public static func serviceFaultHandover(
        _ inputs: SwitchingInputs, enabled: Bool, cause: (resource: String, isDatabase: Bool), peerReady: Bool,
        peerGaveUp: [String], peerReachesTieBreaker: Bool, tieBreakersConfigured: Bool, peerHasEveryCommit: Bool,
        standbyRefusal: SwitchRefusal?
    ) -> SwitchVerdict {
        guard inputs.role == .active else { return .refuse(.notActive(inputs.role)) }
        guard enabled else { return .refuse(.serviceFaultHandoverOff) }
        guard !inputs.maintenance else { return .refuse(.maintenance) }
        guard inputs.autoFailover else { return .refuse(.autoFailoverOff) }
        guard inputs.peerState == .alive, inputs.peerRole == .standby else {
            return .refuse(.noStandby("the peer is \(inputs.peerState), role \(inputs.peerRole?.rawValue ?? "unknown"): no standby to hand over to"))
        }
        if peerGaveUp.contains(cause.resource) { return .refuse(.failedOnPeerToo(cause.resource)) }
        guard peerReady else { return .refuse(.peerNotReady) }
        guard peerReachesTieBreaker || !tieBreakersConfigured else { return .refuse(.peerCutOff) }
        if inputs.hasDatabase {
            if cause.isDatabase {
                guard peerHasEveryCommit else { return .refuse(.peerNotInSync) }
            } else if let standbyRefusal {
                return .refuse(standbyRefusal)
            }
        }
        guard !inputs.effectorBusy else { return .refuse(.effectorBusy) }
        return .proceed
    }

    /// A switchover, asked on the active node: the standby takes over only once it has
    /// replayed the final WAL position, and nobody is active until then. So the standby must
    /// stream and be within `maxLagBytes`, as the primary reports it (`walSenderState`: its
    /// replication connection's state, nil when not connected). Without a database, nothing
    /// to wait for.
    public static func handover(hasDatabase: Bool, walSenderState: String?, lagBytes: UInt64, maxLagBytes: UInt64) -> SwitchRefusal? {
        guard hasDatabase else { return nil }
        guard walSenderState == "streaming" else { return .standbyNotStreaming(walSenderState ?? "not connected") }
        return lagBytes > maxLagBytes ? .standbyBehind(bytes: lagBytes, limit: maxLagBytes) : nil
    }

    /// What the standby does with its peer's handover (a switchover: the peer released the
    /// active role and stopped its database at `finalLSN`).
    public enum HandoverStep: Equatable, Sendable {
        /// The final LSN is replayed: take over, nothing diverges.
        case takeOver
        /// The final LSN did not arrive within the grace time (the replication connection is
        /// cut), but the peer's primary waited for this standby on every commit until it
        /// stopped: every acknowledged transaction is here. Take over; the old primary
        /// rejoins with pg_rewind.
        case takeOverWithoutFinalLSN
        /// Wait for replay (or for the grace time).
        case wait
    }

    /// The standby's step, `waited` after it first saw the handover. `replayed`: the local
    /// standby's replay position (nil: unknown).
    public static func acceptHandover(
        replayed: UInt64?, finalLSN: UInt64, peerHadEveryCommit: Bool, waited: Duration, grace: Duration
    ) -> HandoverStep {
        guard let replayed else { return .wait }
        if replayed >= finalLSN { return .takeOver }
        return peerHadEveryCommit && waited >= grace ? .takeOverWithoutFinalLSN : .wait
    }

    static func lagRefusal(_ inputs: SwitchingInputs) -> SwitchRefusal? {
        guard inputs.hasDatabase else { return nil }
        guard let lag = inputs.lagBytes else { return .lagUnknown }
        if lag > inputs.maxLagBytes { return .lagTooHigh(bytes: lag, limit: inputs.maxLagBytes) }
        return inputs.inSync == false ? .notInSync : nil
    }

    /// Two active nodes that hear each other: which one yields. The lower epoch yields; on
    /// equal epochs the lower priority; on equal priorities the name that sorts later (so the
    /// two nodes always agree).
    public static func localYields(
        localEpoch: UInt64, localPriority: Int, localName: String,
        peerEpoch: UInt64, peerPriority: Int, peerName: String
    ) -> Bool {
        if localEpoch != peerEpoch { return localEpoch < peerEpoch }
        if localPriority != peerPriority { return localPriority < peerPriority }
        return localName > peerName
    }
}
