/// What changed about the peer, in the order it happened.
public enum PeerEvent: Equatable, Sendable {
    case stateChanged(from: PeerState, to: PeerState)
    case linkChanged(link: Int, up: Bool)
    /// The peer came back with a higher generation: it restarted.
    case restarted(generation: UInt64)
    /// The peer's role changed (or was heard for the first time).
    case roleChanged(NodeRole)
    /// The peer's epoch changed (or was heard for the first time).
    case epochChanged(UInt64)
    /// A packet was accepted: the last-seen timestamps changed. Always the last event of an
    /// accepted packet.
    case seen
}

/// The peer's health, as a pure state machine driven by accepted heartbeats and a virtual
/// clock.
///
/// - The peer is `unknown` until the first accepted packet (or `dead`, if nothing was heard
///   by `start + dead`); `alive` while the latest accepted packet on any link is younger than
///   `warn`; `late` from `warn` until `dead`; `dead` once every link has been silent for at
///   least `dead`. A link is up while its latest accepted packet is younger than `dead`.
/// - ``receive(_:onLink:at:wallClock:)`` first checks the packet (cluster, sender, link,
///   replay); a rejected packet changes nothing at all. An accepted one first yields the
///   transitions due strictly before its arrival, then counts: a packet that arrives at the
///   very instant a deadline falls wins over that deadline (the peer was heard at that
///   instant). ``advance(to:)`` yields the transitions due at or before the instant.
/// - Only ``MonotonicInstant``s drive timing; the wall clock is stored for publication only.
/// - An instant earlier than one already processed (a packet timestamped before a timer that
///   ran first) is treated as the latest processed instant: time never goes backwards.
public struct PeerTracker: Sendable, Equatable {
    public struct Timing: Sendable, Equatable {
        public var interval: Duration
        public var warn: Duration
        public var dead: Duration

        /// - Precondition: `0 < warn <= dead` (programmer error otherwise; the configuration
        ///   guarantees more).
        public init(interval: Duration, warn: Duration, dead: Duration) {
            precondition(warn > .zero && warn <= dead, "PeerTracker.Timing needs 0 < warn <= dead")
            self.interval = interval
            self.warn = warn
            self.dead = dead
        }

        /// The timing configured in `[cluster]`.
        public init(_ cluster: ClusterSettings) {
            self.init(interval: cluster.interval, warn: cluster.warn, dead: cluster.dead)
        }
    }

    public struct LinkStatus: Sendable, Equatable {
        /// The latest accepted packet on this link is younger than the dead time.
        public var up: Bool
        /// When the latest packet on this link was accepted (monotonic), `nil` = never.
        public var lastSeen: MonotonicInstant?
        /// CLOCK_REALTIME µs of the latest accepted packet on this link, 0 = never.
        public var lastSeenWallClock: UInt64

        public init(up: Bool = false, lastSeen: MonotonicInstant? = nil, lastSeenWallClock: UInt64 = 0) {
            self.up = up
            self.lastSeen = lastSeen
            self.lastSeenWallClock = lastSeenWallClock
        }
    }

    public let cluster: String
    public let peer: String
    public let timing: Timing
    public let start: MonotonicInstant
    /// Packets of a lower generation are replays (the shell persists the highest generation
    /// seen, so a restart of this node does not reopen the window).
    public let minimumGeneration: UInt64

    public private(set) var state: PeerState = .unknown
    public private(set) var links: [LinkStatus]
    /// The peer's role as last heard, `nil` = never heard.
    public private(set) var peerRole: NodeRole?
    public private(set) var peerEpoch: UInt64 = 0
    public private(set) var peerLSN: UInt64 = 0
    /// The highest generation accepted, `nil` = never heard. Persist it and pass it back as
    /// `minimumGeneration` after a restart.
    public private(set) var peerGeneration: UInt64?
    public private(set) var peerAutoFailover: Bool?
    public private(set) var peerMaintenance: Bool?
    /// The peer released the active role for a switchover; `peerLSN` is its final WAL position.
    public private(set) var peerHandover = false
    /// The peer's handover is a clean stop at its final LSN (as it last said).
    public private(set) var peerHandoverClean = false
    /// The peer's primary waits for our standby on every commit (as it last said).
    public private(set) var peerWaitsForUs = false
    /// The peer reaches one of its tie-breakers (as it last said).
    public private(set) var peerReachesTieBreaker = false
    /// The peer (a standby) asks this node to hand the active role over.
    public private(set) var peerSwitchoverRequested = false
    /// The peer says its own copy of the service is ready (as it last said).
    public private(set) var peerServiceReady = false
    /// The resources the peer gave up (as it last said).
    public private(set) var peerGaveUp: [String] = []
    /// A cleanup of resource failures the peer asks for (as it last said).
    public private(set) var peerCleanup: ResourceCleanup?
    /// When the latest packet was accepted, on any link (monotonic), `nil` = never.
    public private(set) var lastSeen: MonotonicInstant?
    /// CLOCK_REALTIME µs of the latest accepted packet, 0 = never (`PeerLastSeenUSec`).
    public private(set) var lastSeenWallClock: UInt64 = 0
    /// The latest instant processed.
    public private(set) var now: MonotonicInstant

    /// The latest accepted sequence per link, in the current generation.
    private var sequences: [UInt64?]

    /// - Precondition: `linkCount >= 1`.
    public init(
        cluster: String, peer: String, linkCount: Int, timing: Timing, start: MonotonicInstant,
        minimumGeneration: UInt64 = 0
    ) {
        precondition(linkCount >= 1, "a peer needs at least one link")
        self.cluster = cluster
        self.peer = peer
        self.timing = timing
        self.start = start
        self.minimumGeneration = minimumGeneration
        self.links = Array(repeating: LinkStatus(), count: linkCount)
        self.sequences = Array(repeating: nil, count: linkCount)
        self.now = start
    }

    /// Why `heartbeat`, arriving on `link`, would be rejected; `nil` if it would be accepted.
    /// Changes nothing.
    public func rejection(for heartbeat: Heartbeat, onLink link: Int) -> PacketRejection? {
        guard heartbeat.kind == .heartbeat else { return .unsupportedKind }
        guard heartbeat.cluster == cluster else { return .wrongCluster }
        guard heartbeat.node == peer else { return .unknownSender }
        guard link >= 0, link < links.count, Int(heartbeat.link) == link else { return .wrongLink }
        guard heartbeat.generation >= minimumGeneration else { return .replayed }
        if let generation = peerGeneration {
            if heartbeat.generation < generation { return .replayed }
            if heartbeat.generation == generation, let last = sequences[link], heartbeat.sequence <= last {
                return .replayed
            }
        }
        return nil
    }

    /// A decoded, authenticated heartbeat arrived on `link` at `instant`; `wallClock` (µs) is
    /// kept for publication only. A rejected packet changes no state.
    public mutating func receive(
        _ heartbeat: Heartbeat, onLink link: Int, at instant: MonotonicInstant, wallClock: UInt64
    ) -> Result<[PeerEvent], PacketRejection> {
        if let rejection = rejection(for: heartbeat, onLink: link) { return .failure(rejection) }
        let now = max(instant, self.now)
        var events = transitions(at: now, inclusive: false)
        self.now = now

        let firstPacket = lastSeen == nil
        if let generation = peerGeneration, heartbeat.generation > generation {
            events.append(.restarted(generation: heartbeat.generation))
            sequences = Array(repeating: nil, count: links.count)
        }
        peerGeneration = heartbeat.generation
        sequences[link] = heartbeat.sequence

        links[link].lastSeen = now
        links[link].lastSeenWallClock = wallClock
        lastSeen = now
        lastSeenWallClock = wallClock
        if !links[link].up {
            links[link].up = true
            events.append(.linkChanged(link: link, up: true))
        }
        if state != .alive {
            events.append(.stateChanged(from: state, to: .alive))
            state = .alive
        }
        if peerRole != heartbeat.role {
            peerRole = heartbeat.role
            events.append(.roleChanged(heartbeat.role))
        }
        if firstPacket || peerEpoch != heartbeat.epoch {
            peerEpoch = heartbeat.epoch
            events.append(.epochChanged(heartbeat.epoch))
        }
        peerLSN = heartbeat.lsn
        peerAutoFailover = heartbeat.autoFailover
        peerMaintenance = heartbeat.maintenance
        peerHandover = heartbeat.handover
        peerHandoverClean = heartbeat.handover && heartbeat.handoverClean
        peerSwitchoverRequested = heartbeat.switchoverRequested
        peerWaitsForUs = heartbeat.synchronous
        peerReachesTieBreaker = heartbeat.reachesTieBreaker
        peerServiceReady = heartbeat.serviceReady
        peerGaveUp = heartbeat.gaveUp
        peerCleanup = heartbeat.cleanup
        events.append(.seen)
        return .success(events)
    }

    /// Time passes: the transitions due at or before `instant`, links first (by index), then
    /// the peer's state (one step at a time: alive → late → dead).
    public mutating func advance(to instant: MonotonicInstant) -> [PeerEvent] {
        let now = max(instant, self.now)
        let events = transitions(at: now, inclusive: true)
        self.now = now
        return events
    }

    /// The earliest instant at which ``advance(to:)`` would yield an event, `nil` if none is
    /// pending (the peer is dead and every link down). The shell arms one timer for it.
    public var nextDeadline: MonotonicInstant? {
        var deadlines: [MonotonicInstant] = []
        for link in links where link.up {
            if let seen = link.lastSeen { deadlines.append(seen + timing.dead) }
        }
        switch state {
        case .unknown: deadlines.append(start + timing.dead)
        case .alive: if let lastSeen { deadlines.append(lastSeen + timing.warn) }
        case .late: if let lastSeen { deadlines.append(lastSeen + timing.dead) }
        case .dead: break
        }
        return deadlines.min()
    }

    /// Applies the deadlines that have fallen by `now` (at or before it when `inclusive`,
    /// strictly before otherwise). Only ever moves forward: up → down, alive → late → dead.
    private mutating func transitions(at now: MonotonicInstant, inclusive: Bool) -> [PeerEvent] {
        func due(_ deadline: MonotonicInstant) -> Bool { inclusive ? deadline <= now : deadline < now }
        var events: [PeerEvent] = []
        for index in links.indices where links[index].up {
            if let seen = links[index].lastSeen, due(seen + timing.dead) {
                links[index].up = false
                events.append(.linkChanged(link: index, up: false))
            }
        }
        func move(to next: PeerState) {
            events.append(.stateChanged(from: state, to: next))
            state = next
        }
        switch state {
        case .unknown:
            if due(start + timing.dead) { move(to: .dead) }
        case .alive, .late:
            guard let lastSeen else { break }
            if state == .alive && due(lastSeen + timing.warn) { move(to: .late) }
            if state == .late && due(lastSeen + timing.dead) { move(to: .dead) }
        case .dead:
            break
        }
        return events
    }
}
