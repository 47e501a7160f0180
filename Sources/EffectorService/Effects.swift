// The side effects the effector drives, one protocol per kind, so the
// sequencing logic can be exercised with fakes in unit tests while the daemon
// uses the real rtnetlink, AF_PACKET, libpq and systemd implementations.
public import ClusterCore

/// Floating addresses: quick, synchronous kernel calls made on the loop thread.
public protocol AddressEffects: AnyObject {
    /// Adds the address; already present is success. Returns whether it was added now.
    func add(_ address: FloatingAddress) throws(EffectorError) -> Bool
    /// Removes the address; already absent is success. Returns whether it was removed now.
    func remove(_ address: FloatingAddress) throws(EffectorError) -> Bool
    /// Whether the interface holds the address now (nil: could not tell).
    func holds(_ address: FloatingAddress) -> Bool?
    /// One round of gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6).
    func announce(_ address: FloatingAddress) throws(EffectorError)
    /// An ARP probe of the address (RFC 5227), blocking for up to its wait: run on a worker thread.
    var prober: @Sendable (FloatingAddress) -> Result<AddressProbe, EffectorError> { get }
}

/// What an ARP probe found: whether something else answers for the address, and its MAC.
public struct AddressProbe: Sendable, Equatable {
    public var answered: Bool
    public var mac: String
    public init(answered: Bool, mac: String) {
        self.answered = answered
        self.mac = mac
    }
}

/// What the effector knows of the local PostgreSQL.
public struct DatabaseSnapshot: Sendable, Equatable {
    /// primary, standby, down or unknown.
    public var role: String
    public var lsn: UInt64
    public var timeline: UInt32
    public var replicationLagBytes: UInt64
    /// Primary: the peer's replication connection state ("streaming", "catchup", ...); standby:
    /// "streaming" while its WAL receiver streams; "" when there is none.
    public var replicationState: String
    /// Primary: the peer's sync_state ("sync", "async", "potential", "quorum"), "" when not connected.
    public var syncState: String
    /// Primary: its synchronous_standby_names.
    public var synchronousStandbyNames: String
    public var replicationLagSeconds: Double
    /// Primary: the slot kept for the peer ("" if none); standby: its primary_slot_name.
    public var replicationSlot: String
    /// Primary: the last reply (or the start) of the peer's replication connection (CLOCK_REALTIME µs, 0 = none).
    public var replicationLastReplyUSec: UInt64 = 0

    public init(
        role: String, lsn: UInt64 = 0, timeline: UInt32 = 0, replicationLagBytes: UInt64 = 0, replicationState: String = "",
        syncState: String = "", synchronousStandbyNames: String = "", replicationLagSeconds: Double = 0, replicationSlot: String = ""
    ) {
        self.role = role
        self.lsn = lsn
        self.timeline = timeline
        self.replicationLagBytes = replicationLagBytes
        self.replicationState = replicationState
        self.syncState = syncState
        self.synchronousStandbyNames = synchronousStandbyNames
        self.replicationLagSeconds = replicationLagSeconds
        self.replicationSlot = replicationSlot
    }

    public static let unknown = DatabaseSnapshot(role: "unknown")
}

/// The local PostgreSQL. Blocking calls: the effector runs them on worker threads.
public protocol DatabaseEffects: Sendable {
    func status() -> DatabaseSnapshot
    /// Promotes a standby and returns once it accepts writes. A primary → .databaseNotStandby;
    /// replay lag beyond max_lag_bytes → .replicationLag (unless ignoreLag). Nothing changes on refusal.
    func promote(ignoreLag: Bool) throws(EffectorError) -> DatabaseSnapshot
    /// With the server stopped: make it a standby of `primary` (pg_rewind or pg_basebackup, the
    /// replication slot, standby.signal, primary_conninfo...). `progress` gets lines in words
    /// (on the worker thread). Returns the method used ("rewind" or "basebackup").
    func makeStandby(primary: IPAddress, method: String, progress: @escaping @Sendable (String) -> Void) throws(EffectorError) -> String
    /// The primary's synchronous_standby_names (ALTER SYSTEM + reload, applied when it returns).
    func setSynchronousStandbyNames(_ value: String) throws(EffectorError)
    /// Waits until the (started) server streams from its primary.
    func waitUntilStreaming() throws(EffectorError) -> DatabaseSnapshot
    /// With the server stopped: make it a standby of `primary` without copying anything and
    /// without talking to it (see StandbySetup.follow).
    func follow(primary: IPAddress) throws(EffectorError)
    /// Waits until the (started) server answers as a standby, streaming or not.
    func waitUntilStandby() throws(EffectorError) -> DatabaseSnapshot
    /// The shutdown checkpoint of the cleanly stopped server: its final WAL position.
    func finalCheckpointLSN() throws(EffectorError) -> UInt64
    /// Creates the physical replication slot `name` on the primary if it does not exist; returns
    /// whether it created it.
    func ensureReplicationSlot(_ name: String) throws(EffectorError) -> Bool
    /// Ends the primary's replication connections; returns how many. A standby → .invalidArgument.
    func detachStandbys() throws(EffectorError) -> Int
    /// The health query (see DatabaseController.healthQuery): nil when it answered, else why not.
    func healthQuery(timeout: Duration) -> String?
    /// Waits (at most `timeout`) until the standby has replayed up to `lsn`; returns whether it
    /// did and its replay position. A primary → .databaseNotStandby.
    func waitForReplay(to lsn: UInt64, timeout: Duration) throws(EffectorError) -> (reached: Bool, replayed: UInt64)
}

/// systemd units, asynchronously on the loop; each completion runs on the loop thread.
public protocol UnitEffects: AnyObject {
    /// Starts the units in order, waiting for each job; stops at the first failure (.unitFailed).
    func start(_ units: [String], completion: @escaping (Result<Void, EffectorError>) -> Void)
    /// Stops the units in the order given, waiting for each job.
    func stop(_ units: [String], completion: @escaping (Result<Void, EffectorError>) -> Void)
    /// Stops a unit at once, SIGKILL to all its processes (a hung server), without a restart.
    func stopKilling(_ unit: String, completion: @escaping (Result<Void, EffectorError>) -> Void)
    /// What systemd says of each unit (missing: could not be read).
    func observations(_ units: [String], completion: @escaping ([String: UnitObservation]) -> Void)
}
