/// This node's role, as a pure state machine: the shell feeds it decisions and the
/// effector's answers, and executes the actions it returns (persist the epoch first, then
/// call the effector, then announce the role).
///
///     standby ──begin takeover──▶ taking-over ──effector ok──▶ active
///        ▲                            │ effector failed
///        │                            ▼
///        └──release ok── releasing ◀── failed / active (yield, release)
public struct RoleMachine: Sendable, Equatable {
    public private(set) var role: NodeRole
    public private(set) var epoch: UInt64
    /// What the running takeover started from (see `epochNotPersisted`).
    private var roleBeforeTakeover: NodeRole = .standby
    private var epochBeforeTakeover: UInt64 = 0

    public enum Action: Equatable, Sendable {
        /// Write the epoch to stable storage before anything else happens.
        case persistEpoch(UInt64)
        /// Ask the effector to take over (promote, addresses, announce, units). `afterHandover`:
        /// it completes the peer's handover (the peer is alive and rejoins): the new primary
        /// waits for it from its first commit.
        case takeover(reason: String, afterHandover: Bool = false)
        /// Ask the effector to release (units, addresses).
        case release(reason: String)
        /// Emit RoleChanged and log the transition.
        case roleChanged(from: NodeRole, to: NodeRole, reason: String)
    }

    public init(role: NodeRole = .standby, epoch: UInt64) {
        self.role = role
        self.epoch = epoch
    }

    /// Starts a takeover: the epoch becomes higher than any this node has seen (its own and
    /// the peer's), so that after a partition heals the newest active node wins.
    public mutating func beginTakeover(peerEpoch: UInt64, reason: String, afterHandover: Bool = false) -> [Action] {
        guard role == .standby || role == .failed else { return [] }
        let old = role
        roleBeforeTakeover = role
        epochBeforeTakeover = epoch
        // Never above Heartbeat.maximumCounter (the decoder refuses larger peer epochs, the
        // state store larger persisted ones), so this cannot overflow; at the bound it stays.
        epoch = min(max(epoch, peerEpoch), Heartbeat.maximumCounter - 1) + 1
        role = .takingOver
        return [
            .persistEpoch(epoch), .roleChanged(from: old, to: .takingOver, reason: reason),
            .takeover(reason: reason, afterHandover: afterHandover),
        ]
    }

    /// The epoch the takeover raised could not be written to stable storage: the takeover does
    /// not happen (the effector is not called; after a restart this node would not know it had
    /// been active with that epoch). The role and the epoch are what they were before, so the
    /// shell refuses with the reason and tries again later; nothing to announce (the shell had
    /// not executed the role change yet).
    public mutating func epochNotPersisted() -> [Action] {
        guard role == .takingOver else { return [] }
        role = roleBeforeTakeover
        epoch = epochBeforeTakeover
        return []
    }

    /// The effector answered the takeover.
    public mutating func takeoverFinished(success: Bool, detail: String) -> [Action] {
        guard role == .takingOver else { return [] }
        role = success ? .active : .failed
        return [.roleChanged(from: .takingOver, to: role, reason: success ? "takeover complete" : "takeover failed: \(detail)")]
    }

    /// Gives up the active role (a peer with a higher epoch was heard, or an operator asked).
    public mutating func beginRelease(reason: String) -> [Action] {
        guard role == .active || role == .failed || role == .takingOver else { return [] }
        let old = role
        role = .releasing
        return [.roleChanged(from: old, to: .releasing, reason: reason), .release(reason: reason)]
    }

    /// The effector answered the release.
    public mutating func releaseFinished(success: Bool, detail: String) -> [Action] {
        guard role == .releasing else { return [] }
        role = success ? .standby : .failed
        return [.roleChanged(from: .releasing, to: role, reason: success ? "released" : "release failed: \(detail)")]
    }

    /// The peer's heartbeats carry a higher epoch: remember it, so the next takeover goes above it.
    public mutating func observe(peerEpoch: UInt64) -> [Action] {
        guard role == .standby, peerEpoch > epoch else { return [] }
        epoch = peerEpoch
        return [.persistEpoch(epoch)]
    }
}
