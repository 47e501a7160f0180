// When the standby pulls which tree: pure, on a virtual clock. The shell reads the roles
// from kusu-hbd, hands them in with CLOCK_MONOTONIC, runs the pulls the scheduler names
// and reports each result back.
public import ClusterCore

/// What kusu-hbd says about the pair (org.kusu.Heartbeat1 Role, PeerState, PeerRole), parsed;
/// a value the contract does not know stays nil.
public struct PairView: Sendable, Equatable {
    public var role: NodeRole?
    public var peerState: PeerState?
    public var peerRole: NodeRole?

    public init(role: NodeRole?, peerState: PeerState?, peerRole: NodeRole?) {
        self.role = role
        self.peerState = peerState
        self.peerRole = peerRole
    }

    /// From the bus's strings ("standby", "alive", "active"; PeerRole is "unknown" before
    /// the first heartbeat).
    public init(role: String, peerState: String, peerRole: String) {
        self.init(role: NodeRole(rawValue: role), peerState: PeerState(rawValue: peerState),
                  peerRole: NodeRole(rawValue: peerRole))
    }
}

/// Whether this node may pull now, or why not.
public enum PullPermission: Sendable, Equatable, CustomStringConvertible {
    case allowed
    /// The reason, in words: "this node is active: it is the source, not a copy".
    case paused(String)

    /// Pull only onto a standby, only from an active peer that is heard (`alive` or `late`).
    /// Everything else pauses, so that nothing is ever written onto an active node and no
    /// standby copies another standby's possibly older data.
    public static func evaluate(_ pair: PairView) -> PullPermission {
        switch pair.role {
        case .standby?: break
        case .active?: return .paused("this node is active: it is the source, not a copy")
        case .takingOver?: return .paused("this node is taking over: it is becoming the source")
        case .releasing?: return .paused("this node is releasing: it pulls again once it is standby")
        case .failed?: return .paused("this node's role is failed: it pulls only as a standby")
        case nil: return .paused("this node's role is unknown: it pulls only as a standby")
        }
        switch pair.peerState {
        case .alive?, .late?: break
        case .dead?: return .paused("the peer is dead: there is nothing to pull from, the copy here stays as it is")
        case .unknown?, nil: return .paused("the peer has not been heard yet")
        }
        guard pair.peerRole == .active else {
            let role = pair.peerRole?.rawValue ?? "unknown"
            return .paused("the peer is \(role), not active: only the active node's trees are pulled")
        }
        return .allowed
    }

    /// kusu-hbd could not be asked (`why`: "kusu-hbd is not running").
    public static func rolesUnknown(_ why: String) -> PullPermission {
        .paused("the roles are unknown (\(why))")
    }

    public var isAllowed: Bool { self == .allowed }

    public var description: String {
        switch self {
        case .allowed: "allowed"
        case .paused(let reason): "paused: \(reason)"
        }
    }
}

/// Which trees are due. Only trees with `pull = true` are scheduled (by their index in
/// `[[sync]]`). Everything is due at once at start, after a pause ends (the source may be
/// a different node now) and on ``pullAllNow(at:)``; after a success the tree is due again
/// one interval after the pull began; after a failure sooner: 5 s, then 10 s, 20 s, ...
/// never later than its interval.
public struct PullScheduler: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var index: Int
        public var interval: Duration
        /// When it is next due; nil = now.
        public var due: MonotonicInstant?
        /// Failures since the last success.
        public var failures: Int
    }

    /// The first retry after a failure; each further failure doubles it, up to the interval.
    public static let firstRetry: Duration = .seconds(5)

    public private(set) var entries: [Entry]
    /// The last permission handed in (nil before the first).
    public private(set) var permission: PullPermission?

    public init(trees: [SyncTree]) {
        entries = trees.enumerated().filter { $0.element.pull }.map {
            Entry(index: $0.offset, interval: $0.element.interval, due: nil, failures: 0)
        }
    }

    /// How the permission changed, if it did.
    public enum Change: Sendable, Equatable {
        case paused(String)
        case resumed
    }

    /// Hands in the current permission. A pause that ends makes every tree due at once.
    public mutating func update(_ new: PullPermission) -> Change? {
        let old = permission
        permission = new
        guard old != new else { return nil }
        switch new {
        case .allowed:
            for i in entries.indices { entries[i].due = nil }
            return .resumed
        case .paused(let reason):
            return .paused(reason)
        }
    }

    /// The trees to pull now, by index, most overdue first (never while paused).
    public func due(at now: MonotonicInstant) -> [Int] {
        guard permission == .allowed else { return [] }
        return entries.filter { ($0.due ?? now) <= now }
            .sorted { ($0.due ?? .origin, $0.index) < ($1.due ?? .origin, $1.index) }
            .map(\.index)
    }

    /// When the earliest tree is next due (nil when paused or nothing is pulled); `now` or
    /// earlier means at once.
    public func nextDue(at now: MonotonicInstant) -> MonotonicInstant? {
        guard permission == .allowed else { return nil }
        return entries.map { $0.due ?? now }.min()
    }

    /// Records the pull of tree `index` that began at `started`.
    public mutating func record(index: Int, succeeded: Bool, started: MonotonicInstant) {
        guard let i = entries.firstIndex(where: { $0.index == index }) else { return }
        if succeeded {
            entries[i].failures = 0
            entries[i].due = started + entries[i].interval
        } else {
            entries[i].failures += 1
            entries[i].due = started + Self.retryDelay(interval: entries[i].interval, failures: entries[i].failures)
        }
    }

    /// A pull that did not run to its end (interrupted by a pause or by the puller stopping):
    /// due again as soon as pulling is allowed.
    public mutating func abandon(index: Int) {
        guard let i = entries.firstIndex(where: { $0.index == index }) else { return }
        entries[i].due = nil
    }

    /// Every tree due now (SIGUSR1, `pull --once`).
    public mutating func pullAllNow() {
        for i in entries.indices { entries[i].due = nil }
    }

    /// 5 s × 2^(failures − 1), at most `interval`.
    public static func retryDelay(interval: Duration, failures: Int) -> Duration {
        var delay = firstRetry
        var n = 1
        while n < failures && delay < interval {
            delay = delay * 2
            n += 1
        }
        return min(delay, interval)
    }
}
