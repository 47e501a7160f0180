internal import Crypto

/// The kind of a heartbeat-channel packet. Version 1 knows only heartbeats; later kinds
/// (switchover coordination, ...) get new codes, and an older decoder rejects them as
/// ``PacketRejection/unsupportedKind``.
public enum PacketKind: UInt8, Sendable, CaseIterable {
    case heartbeat = 1
}

/// One heartbeat: what a node says about itself, once per interval, on every link.
public struct Heartbeat: Equatable, Sendable {
    public var kind: PacketKind
    /// The sender's role.
    public var role: NodeRole
    /// The link (index into the nodes' address lists) the packet is sent on.
    public var link: UInt8
    public var autoFailover: Bool
    public var maintenance: Bool
    /// The sender released the active role for a switchover; `lsn` is its final WAL position.
    public var handover: Bool
    /// The sender asks its active peer to hand the active role over (a switchover asked on the standby).
    public var switchoverRequested: Bool
    /// The sender's primary database waits for the receiver's standby on every commit
    /// (`synchronous_standby_names` names it and it is in sync): the receiver has every
    /// acknowledged transaction.
    public var synchronous: Bool
    /// The sender reaches at least one of its tie-breakers (or has none configured): its
    /// service network works.
    public var reachesTieBreaker: Bool
    /// With `handover`: the final LSN is the shutdown checkpoint of a clean stop (a switchover,
    /// not a killed database): the receiver's new primary can wait for the sender from its first
    /// commit, since the sender follows it without a copy within a moment.
    public var handoverClean: Bool
    /// The sender's own copy of the service is ready: a standby whose database answers and
    /// streams and whose units systemd can start; an active node that has given nothing up.
    public var serviceReady: Bool
    /// The resources the sender has given up (their failures reached the threshold; see
    /// `ServiceHealth`): a node does not hand them back to it. At most
    /// ``HeartbeatCodec/maximumGivenUp`` names of 1...64 bytes.
    public var gaveUp: [String]
    /// An operator's `kusu-ha resource cleanup` on the sender, repeated for a while so the
    /// receiver forgets the same failures (nil: none).
    public var cleanup: ResourceCleanup?
    /// The largest generation, sequence number or epoch a heartbeat may carry: 2^62. A
    /// generation is a wall-clock time in µs (2^62 µs is 146,000 years), an epoch counts
    /// takeovers; the margin above keeps `epoch + 1` and similar arithmetic far from overflow.
    public static let maximumCounter: UInt64 = 1 << 62

    /// Chosen by the sender at start, higher than any it used before; a higher generation
    /// means the sender restarted.
    public var generation: UInt64
    /// Raised by one for every packet within a generation (per link or overall).
    public var sequence: UInt64
    /// The sender's cluster epoch (raised by every takeover).
    public var epoch: UInt64
    /// The sender's database WAL position, 0 = none.
    public var lsn: UInt64
    /// CLOCK_REALTIME µs when sent; informational only, never used for timing.
    public var sentAt: UInt64
    /// The cluster name, 1...64 UTF-8 bytes.
    public var cluster: String
    /// The sender's node name, 1...64 UTF-8 bytes.
    public var node: String

    public init(
        kind: PacketKind = .heartbeat,
        role: NodeRole,
        link: UInt8,
        autoFailover: Bool,
        maintenance: Bool,
        generation: UInt64,
        sequence: UInt64,
        epoch: UInt64,
        lsn: UInt64,
        sentAt: UInt64,
        cluster: String,
        node: String,
        handover: Bool = false,
        switchoverRequested: Bool = false,
        synchronous: Bool = false,
        reachesTieBreaker: Bool = false,
        serviceReady: Bool = false,
        gaveUp: [String] = [],
        cleanup: ResourceCleanup? = nil,
        handoverClean: Bool = false
    ) {
        self.handoverClean = handoverClean
        self.cleanup = cleanup
        self.serviceReady = serviceReady
        self.gaveUp = gaveUp
        self.synchronous = synchronous
        self.reachesTieBreaker = reachesTieBreaker
        self.handover = handover
        self.switchoverRequested = switchoverRequested
        self.kind = kind
        self.role = role
        self.link = link
        self.autoFailover = autoFailover
        self.maintenance = maintenance
        self.generation = generation
        self.sequence = sequence
        self.epoch = epoch
        self.lsn = lsn
        self.sentAt = sentAt
        self.cluster = cluster
        self.node = node
    }
}

/// A cleanup of resource failures, told to the peer: `id` tells one request from the next
/// (the sender's wall clock in µs when it was made); `resource` "" means every resource.
public struct ResourceCleanup: Equatable, Sendable {
    public var id: UInt64
    public var resource: String

    public init(id: UInt64, resource: String) {
        self.id = id
        self.resource = resource
    }
}

/// The shared secret that authenticates heartbeats (HMAC-SHA256).
///
/// `@unchecked Sendable`: swift-crypto does not mark `SymmetricKey` Sendable on Linux, but it
/// is an immutable value (its storage is never mutated after init, and is zeroed when freed),
/// so sharing it between threads is safe. The key is `let` and never exposed.
public struct HeartbeatKey: @unchecked Sendable {
    /// Keys shorter than this are refused.
    public static let minimumLength = 16

    let key: SymmetricKey

    /// A key from the raw secret; `nil` when it has fewer than ``minimumLength`` bytes.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= Self.minimumLength else { return nil }
        key = SymmetricKey(data: bytes)
    }
}

/// Why a packet was dropped. Every rejection leaves all state unchanged; the shell counts it
/// (`PacketsRejected`).
public enum PacketRejection: String, Error, Sendable, CaseIterable {
    /// Shorter than its fields say.
    case truncated
    /// Does not start with "KUHB".
    case badMagic
    /// A protocol version this node does not speak.
    case unsupportedVersion
    /// A packet kind this node does not know.
    case unsupportedKind
    /// Well framed and signed, but with invalid contents (unknown role, bad name, trailing bytes...).
    case malformed
    /// The MAC does not match: forged, corrupted, or signed with another key.
    case badSignature
    /// Signed, but a generation, sequence or epoch above ``Heartbeat/maximumCounter``: no
    /// genuine node gets there, and persisting such a value would poison this node's state
    /// (or make the next takeover's epoch overflow).
    case outOfRange
    /// From another cluster.
    case wrongCluster
    /// From a node that is not our peer.
    case unknownSender
    /// The link field does not match the link it arrived on.
    case wrongLink
    /// An old generation or an already-seen sequence number.
    case replayed
}
