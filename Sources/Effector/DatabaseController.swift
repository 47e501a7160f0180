// The PostgreSQL side effects of kusu-effectord: reading the server's role and position,
// promoting a standby, and preparing a data directory to rejoin as a standby.
//
// Every call blocks (libpq, subprocesses, short sleeps); the daemon runs them on a worker thread.
// `DatabaseController` keeps no connection between calls (each call opens and closes its own), so
// it is Sendable and may be used from any thread, also concurrently. `StandbySetup` is stateless.
//
// Requirements on the PostgreSQL installation (for administrators):
// - kusu-effectord runs as root and connects over the Unix socket as `settings.user` (postgres).
//   Peer authentication would refuse root as postgres, so map it in pg_hba.conf/pg_ident.conf:
//       pg_hba.conf:    local   all          all   peer map=kusu
//                       local   replication  all   peer map=kusu
//       pg_ident.conf:  kusu    root         postgres
//                       kusu    postgres     postgres
//   (The replication line is what the peer's pg_basebackup/walreceiver and pg_rewind use when
//   they connect over a socket; over TCP use your usual host lines.)
// - pg_rewind needs `wal_log_hints = on` (or a cluster initialised with data checksums), and the
//   old primary's WAL back to its last checkpoint before the two servers diverged. Before
//   rewinding, pg_rewind crash-recovers an old primary that died, and that recovery's checkpoint
//   removes older WAL unless it is kept: set `wal_keep_size` to at least the WAL written in one
//   checkpoint_timeout (max_wal_size is a safe choice), or archive WAL with a restore_command and
//   pass `restoreTargetWAL: true`. Otherwise pg_rewind fails ("could not find previous WAL
//   record") and the node needs a fresh pg_basebackup.
// - Each standby should set `wal_retrieve_retry_interval = 200ms`: with the default 5 s a promote
//   that arrives right after the walreceiver lost the primary can stall for up to 5 s.

public import ClusterCore
import Glibc
// Glibc types (timespec, SOCK_*) that the CNetlink headers also declare are attributed
// to whichever module clang builds first; importing both keeps every build seeing them.
import CNetlink

/// What the local PostgreSQL is, as the bus property `DatabaseRole` shows it.
public enum DatabaseRole: String, Sendable {
    /// Accepts writes (not in recovery).
    case primary
    /// In recovery (a hot standby that answers queries).
    case standby
    /// Nothing listens on the socket (stopped, or not started yet).
    case down
    /// Something listens but we could not ask it (starting up, authentication refused, a query failed).
    case unknown
}

/// One reading of the local server.
public struct DatabaseStatus: Sendable, Equatable {
    public var role: DatabaseRole
    /// pg_current_wal_lsn() on a primary, pg_last_wal_replay_lsn() on a standby; 0 when unknown.
    public var lsn: UInt64
    /// The timeline the server writes (primary) or receives/replays (standby); 0 when unknown.
    public var timeline: UInt32
    /// Standby: WAL it knows of but has not replayed yet — the newer of what it received and what
    /// the primary last reported as its end, minus what it replayed.
    /// Primary: the worst standby's pg_current_wal_lsn() − replay_lsn (0 without standbys), i.e.
    /// what that standby would still have to replay, including WAL not yet sent to it.
    public var replicationLagBytes: UInt64
    /// Standby: its WAL receiver streams from a primary (pg_stat_wal_receiver.status = 'streaming').
    /// Primary: at least one standby streams from it (pg_stat_replication.state = 'streaming').
    public var streaming: Bool
    /// The replication of the peer's standby, as this server sees it (see `ReplicationDetails`).
    public var replication: ReplicationDetails

    public init(
        role: DatabaseRole, lsn: UInt64 = 0, timeline: UInt32 = 0, replicationLagBytes: UInt64 = 0, streaming: Bool = false,
        replication: ReplicationDetails = ReplicationDetails()
    ) {
        self.role = role
        self.lsn = lsn
        self.timeline = timeline
        self.replicationLagBytes = replicationLagBytes
        self.streaming = streaming
        self.replication = replication
    }
}

/// Replication health beyond the lag in bytes.
public struct ReplicationDetails: Sendable, Equatable {
    /// Primary: `pg_stat_replication.state` of the peer's connection ("streaming", "catchup",
    /// ...), nil when it is not connected. Standby: "streaming" when its WAL receiver streams,
    /// nil otherwise.
    public var state: String?
    /// Primary: the peer's `sync_state` ("sync", "async", "potential", "quorum"), nil when not
    /// connected. Standby: nil (only the primary knows).
    public var syncState: String?
    /// Primary: its `synchronous_standby_names`. Standby: "".
    public var synchronousStandbyNames: String
    /// Primary: the peer's `replay_lag` in seconds. Standby: how old the last replayed
    /// transaction is while WAL waits to be replayed, 0 when it has replayed everything received.
    public var lagSeconds: Double
    /// Primary: the slot kept for the peer if it exists ("" if not). Standby: its `primary_slot_name`.
    public var slot: String
    /// Primary: the last sign of life of the peer's replication connection — its last reply
    /// (pg_stat_replication.reply_time), or its start — CLOCK_REALTIME µs, 0 = none: the
    /// connection of a standby that crashed lingers until wal_sender_timeout.
    public var lastReplyUSec: UInt64

    public init(
        state: String? = nil, syncState: String? = nil, synchronousStandbyNames: String = "", lagSeconds: Double = 0, slot: String = "",
        lastReplyUSec: UInt64 = 0
    ) {
        self.lastReplyUSec = lastReplyUSec
        self.state = state
        self.syncState = syncState
        self.synchronousStandbyNames = synchronousStandbyNames
        self.lagSeconds = lagSeconds
        self.slot = slot
    }
}

/// A refused or failed database operation; `message` is meant for an administrator.
public struct DatabaseError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Could not connect to the local server.
        case unreachable
        /// Promote asked of a server that is not in recovery (already a primary). Nothing was done.
        case notStandby
        /// The standby is further behind than allowed. Nothing was done.
        case replicationLag
        /// Asked of a standby what only a primary does. Nothing was done.
        case notPrimary
        /// pg_promote refused, or the server left recovery in an unexpected way.
        case promoteFailed
        /// pg_rewind or writing the standby configuration failed.
        case rejoinFailed
        /// The operation did not finish within its deadline.
        case timeout
        /// A query failed.
        case queryFailed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Talks to the local PostgreSQL through libpq as described by `[database]`.
public final class DatabaseController: Sendable {
    public let settings: DatabaseSettings
    /// The peer's node name: its standby's application_name, and the slot kept for it.
    public let peerName: String?

    public init(settings: DatabaseSettings, peerName: String? = nil) {
        self.settings = settings
        self.peerName = peerName
    }

    /// The conninfo we connect with: Unix socket only, 2 s connect timeout, every statement bounded.
    public var conninfo: String {
        PostgresConnection.conninfo([
            ("host", settings.socketDirectory),
            ("port", String(settings.port)),
            ("user", settings.user),
            ("dbname", "postgres"),
            ("connect_timeout", "2"),
            ("application_name", "kusu-effectord"),
            ("options", "-c statement_timeout=10000"),
        ])
    }

    /// The socket file the server listens on.
    public var socketPath: String { "\(settings.socketDirectory)/.s.PGSQL.\(settings.port)" }

    /// Opens a connection to the local server.
    public func connect() throws(DatabaseError) -> PostgresConnection {
        do {
            return try PostgresConnection(conninfo: conninfo)
        } catch {
            throw DatabaseError(.unreachable, "cannot connect to the local PostgreSQL at \(socketPath): \(error.message)")
        }
    }

    /// The server's current role and position. Never throws: `.down` when nothing listens on the
    /// socket (no socket file, or connection refused) — with the final position of a cleanly
    /// stopped cluster (its shutdown checkpoint, from pg_controldata), 0 when it did not stop
    /// cleanly —, `.unknown` on any other failure.
    public func status() -> DatabaseStatus {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection(conninfo: conninfo)
        } catch {
            guard Self.nothingListens(at: socketPath) else { return DatabaseStatus(role: .unknown) }
            let final = try? StandbySetup.finalCheckpointLSN(dataDirectory: settings.dataDirectory)
            return DatabaseStatus(role: .down, lsn: final ?? 0)
        }
        return (try? read(connection)) ?? DatabaseStatus(role: .unknown)
    }

    /// The health query: a new connection (as a client would make), then on a primary a
    /// transaction made durable on the local disk (`txid_current()` under
    /// `synchronous_commit = local`: it needs a working WAL writer and disk, and does not wait
    /// for the standby), on a standby a read of its replay position. Each statement is bounded
    /// by `timeout`; the caller bounds the connection too (libpq's connect_timeout is at least
    /// 2 s). Returns the role it found.
    public func healthQuery(timeout: Duration) throws(DatabaseError) -> DatabaseRole {
        let milliseconds = max(1, timeout.wholeMilliseconds)
        let conninfo = PostgresConnection.conninfo([
            ("host", settings.socketDirectory), ("port", String(settings.port)), ("user", settings.user),
            ("dbname", "postgres"), ("connect_timeout", String(max(2, (milliseconds + 999) / 1000))),
            ("application_name", "kusu-effectord health"),
            ("options", "-c statement_timeout=\(milliseconds) -c synchronous_commit=local"),
        ])
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection(conninfo: conninfo)
        } catch {
            let why = Self.nothingListens(at: socketPath) ? "nothing listens on \(socketPath)" : error.message
            throw DatabaseError(.unreachable, "cannot connect: \(why)")
        }
        do {
            guard let inRecovery = try connection.scalar("SELECT pg_is_in_recovery()") else {
                throw DatabaseError(.queryFailed, "pg_is_in_recovery() returned NULL")
            }
            if inRecovery == "t" {
                _ = try connection.scalar("SELECT pg_last_wal_replay_lsn()")
                return .standby
            }
            _ = try connection.scalar("SELECT txid_current()")
            return .primary
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError(.queryFailed, "the health query failed: \(error)")
        }
    }

    /// Promotes the local standby and returns once it accepts writes: SELECT pg_promote(false),
    /// then pg_is_in_recovery() every 10 ms until false, within `timeout`.
    /// Refuses, doing nothing, on a primary (`.notStandby`) and when the standby's lag exceeds
    /// `settings.maxLagBytes` unless `ignoreLag` (`.replicationLag`).
    public func promote(ignoreLag: Bool, timeout: Duration) throws(DatabaseError) -> DatabaseStatus {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let connection = try connect()
        let before: DatabaseStatus
        do { before = try read(connection) } catch {
            throw DatabaseError(.queryFailed, "cannot read the state of the local PostgreSQL: \(error.message)")
        }
        guard before.role == .standby else {
            throw DatabaseError(.notStandby, "the local PostgreSQL is already a primary (not in recovery): nothing to promote")
        }
        if !ignoreLag && before.replicationLagBytes > settings.maxLagBytes {
            throw DatabaseError(
                .replicationLag,
                "the local standby has \(before.replicationLagBytes) bytes of WAL not yet replayed, more than the allowed "
                    + "\(settings.maxLagBytes) (database.max_lag_bytes); not promoting it — promoting anyway would lose "
                    + "or delay those changes")
        }
        let accepted: String?
        do {
            // A standby whose replay was paused (pg_wal_replay_pause) notices a promote only once a
            // second: resume replay first. Promotion replays everything received anyway.
            if try connection.scalar("SELECT pg_get_wal_replay_pause_state()") != "not paused" {
                try connection.query("SELECT pg_wal_replay_resume()")
            }
            accepted = try connection.scalar("SELECT pg_promote(false)")
        } catch {
            throw DatabaseError(.promoteFailed, "PostgreSQL refused to promote: \(error.message)")
        }
        guard accepted == "t" else {
            throw DatabaseError(.promoteFailed, "PostgreSQL refused to promote (pg_promote returned false): is it still in recovery?")
        }
        while true {
            let inRecovery: String?
            do { inRecovery = try connection.scalar("SELECT pg_is_in_recovery()") } catch {
                throw DatabaseError(.promoteFailed, "lost the local PostgreSQL while it was being promoted: \(error.message)")
            }
            if inRecovery == "f" { break }
            if clock.now >= deadline {
                throw DatabaseError(
                    .timeout,
                    "the local PostgreSQL was asked to promote but still was in recovery after \(Self.describe(timeout)); "
                        + "it may finish later — check its log")
            }
            sleepFor(.milliseconds(10))
        }
        do { return try read(connection) } catch {
            throw DatabaseError(.queryFailed, "promoted, but cannot read the state of the local PostgreSQL: \(error.message)")
        }
    }

    /// Sets the primary's `synchronous_standby_names` (ALTER SYSTEM, so it survives a restart;
    /// '' = commits wait for no standby) and reloads the configuration; returns once the server
    /// uses the new value, within `timeout`. Commits waiting for a standby that is no longer
    /// named are released by the reload. Refused on a standby (`.notPrimary`), nothing changed.
    public func setSynchronousStandbyNames(_ value: String, timeout: Duration = .seconds(5)) throws(DatabaseError) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let connection = try connect()
        do {
            guard try connection.scalar("SELECT pg_is_in_recovery()") == "f" else {
                throw DatabaseError(.notPrimary, "the local PostgreSQL is a standby: synchronous_standby_names matters only on the primary")
            }
            if try connection.scalar("SELECT current_setting('synchronous_standby_names')") == value { return }
            // ALTER SYSTEM takes no parameters: the value goes in as a quoted literal.
            try connection.execute("ALTER SYSTEM SET synchronous_standby_names = \(Self.sqlLiteral(value))")
            try connection.query("SELECT pg_reload_conf()")
            while try connection.scalar("SELECT current_setting('synchronous_standby_names')") != value {
                if clock.now >= deadline {
                    throw DatabaseError(.timeout, "PostgreSQL did not apply synchronous_standby_names = \(Self.sqlLiteral(value)) within \(Self.describe(timeout))")
                }
                sleepFor(.milliseconds(10))
            }
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError(.queryFailed, "cannot set synchronous_standby_names: \(error)")
        }
    }

    /// Creates the physical replication slot `name` (reserving WAL from now on) unless it exists;
    /// returns whether it created it. Refused on a standby (`.notPrimary`).
    public func ensureReplicationSlot(_ name: String) throws(DatabaseError) -> Bool {
        let connection = try connect()
        do {
            guard try connection.scalar("SELECT pg_is_in_recovery()") == "f" else {
                throw DatabaseError(.notPrimary, "the local PostgreSQL is a standby: slots for standbys are made on the primary")
            }
            let created = try connection.scalar(
                "SELECT count(pg_create_physical_replication_slot($1, true)) FROM (SELECT 1) AS one "
                    + "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", [name])
            return created == "1"
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError(.queryFailed, "cannot create the replication slot \(name): \(error)")
        }
    }

    /// Ends the primary's replication connections (pg_terminate_backend of every walsender) and
    /// returns how many it ended. A clean shutdown waits until every connected standby confirms
    /// the final WAL, for up to wal_sender_timeout when its link is cut; with the connections
    /// gone it does not wait. A standby whose link works reconnects at once (its
    /// wal_retrieve_retry_interval). Refused on a standby (`.notPrimary`), nothing changed.
    public func terminateReplicationConnections() throws(DatabaseError) -> Int {
        let connection = try connect()
        do {
            guard try connection.scalar("SELECT pg_is_in_recovery()") == "f" else {
                throw DatabaseError(.notPrimary, "the local PostgreSQL is a standby: it has no standbys to detach")
            }
            let ended = try connection.scalar("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_replication")
            return Int(ended ?? "0") ?? 0
        } catch let error as DatabaseError {
            throw error
        } catch {
            throw DatabaseError(.queryFailed, "cannot end the replication connections: \(error)")
        }
    }

    /// Waits until the local standby has replayed WAL up to `lsn` (a switchover's final LSN),
    /// reading pg_last_wal_replay_lsn() every 10 ms for at most `timeout`. Returns whether it got
    /// there and how far it replayed. A server not in recovery replays nothing: `.notStandby`.
    public func waitForReplay(to lsn: UInt64, timeout: Duration) throws(DatabaseError) -> (reached: Bool, replayed: UInt64) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let connection = try connect()
        while true {
            let row: [String?]
            do {
                row = try connection.query("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text").first ?? []
            } catch {
                throw DatabaseError(.queryFailed, "cannot read the replay position of the local PostgreSQL: \(error.message)")
            }
            guard row.count == 2, row[0] == "t" else {
                throw DatabaseError(.notStandby, "the local PostgreSQL is not a standby: it replays no WAL")
            }
            let replayed = row[1].flatMap(Self.parseLSN) ?? 0
            if replayed >= lsn || clock.now >= deadline { return (replayed >= lsn, replayed) }
            sleepFor(.milliseconds(10))
        }
    }

    /// A SQL string literal: single quotes doubled (standard_conforming_strings is on since 9.1).
    public static func sqlLiteral(_ value: String) -> String {
        var quoted = "'"
        for character in value {
            if character == "'" { quoted.append("'") }
            quoted.append(character)
        }
        return quoted + "'"
    }

    // MARK: - Reading the state

    private func read(_ connection: PostgresConnection) throws(PostgresError) -> DatabaseStatus {
        guard let inRecovery = try connection.scalar("SELECT pg_is_in_recovery()") else {
            throw PostgresError(message: "pg_is_in_recovery() returned NULL")
        }
        if inRecovery == "f" {
            // The timeline of the WAL being written is the first 8 hex digits of its segment name
            // (pg_control's timeline lags behind until the first checkpoint after a promote).
            let peer = peerName ?? ""
            let row = try connection.query("""
                SELECT pg_current_wal_lsn()::text,
                       pg_walfile_name(pg_current_wal_lsn()),
                       (SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::bigint FROM pg_stat_replication),
                       (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'),
                       current_setting('synchronous_standby_names'),
                       r.state, r.sync_state, coalesce(extract(epoch FROM r.replay_lag), 0)::float8,
                       coalesce((SELECT slot_name::text FROM pg_replication_slots WHERE slot_name = $2), ''),
                       (extract(epoch FROM coalesce(greatest(r.reply_time, r.backend_start), r.backend_start)) * 1000000)::bigint
                FROM (SELECT 1) AS one
                LEFT JOIN LATERAL (SELECT state, sync_state, replay_lag, backend_start, reply_time FROM pg_stat_replication
                                   WHERE lower(application_name) = lower($1)
                                   -- A standby that reconnected after its link was cut has a second
                                   -- row until the old one's wal_sender_timeout: the newest is live.
                                   ORDER BY state = 'streaming' DESC,
                                            greatest(reply_time, backend_start) DESC NULLS LAST
                                   LIMIT 1) AS r ON true
                """, [peer, DatabaseSettings.slotName(for: peer)]).first ?? []
            guard row.count == 10, let lsn = row[0].flatMap(Self.parseLSN), let walFile = row[1],
                let timeline = UInt32(walFile.prefix(8), radix: 16)
            else { throw PostgresError(message: "unexpected answer to the primary status query: \(row)") }
            let lag = row[2].flatMap { Int64($0) }.map { UInt64(max(0, $0)) } ?? 0
            let replication = ReplicationDetails(
                state: row[5], syncState: row[6], synchronousStandbyNames: row[4] ?? "",
                lagSeconds: row[7].flatMap { Double($0) } ?? 0, slot: peerName == nil ? "" : row[8] ?? "",
                lastReplyUSec: row[9].flatMap { UInt64($0) } ?? 0)
            return DatabaseStatus(role: .primary, lsn: lsn, timeline: timeline, replicationLagBytes: lag,
                                  streaming: (row[3].flatMap { Int($0) } ?? 0) > 0, replication: replication)
        }
        let row = try connection.query("""
            SELECT pg_last_wal_replay_lsn()::text,
                   greatest(pg_last_wal_receive_lsn(), r.latest_end_lsn, pg_last_wal_replay_lsn())::text,
                   coalesce(r.received_tli, (SELECT timeline_id FROM pg_control_checkpoint())),
                   coalesce(r.status = 'streaming', false),
                   coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8,
                   current_setting('primary_slot_name')
            FROM (SELECT 1) AS one
            LEFT JOIN pg_stat_wal_receiver AS r ON true
            """).first ?? []
        guard row.count == 6 else { throw PostgresError(message: "unexpected answer to the standby status query: \(row)") }
        let replayed = row[0].flatMap(Self.parseLSN) ?? 0
        let known = row[1].flatMap(Self.parseLSN) ?? replayed
        let streaming = row[3] == "t"
        let lagBytes = known > replayed ? known - replayed : 0
        // The age of the last replayed transaction is a lag only while something waits to be replayed.
        let replication = ReplicationDetails(
            state: streaming ? "streaming" : nil, lagSeconds: lagBytes > 0 ? max(0, row[4].flatMap { Double($0) } ?? 0) : 0,
            slot: row[5] ?? "")
        return DatabaseStatus(
            role: .standby, lsn: replayed, timeline: row[2].flatMap { UInt32($0) } ?? 0,
            replicationLagBytes: lagBytes, streaming: streaming, replication: replication)
    }

    /// True when connecting to the socket fails because no server is there (no socket file, or
    /// nobody accepts on it). Decided with our own connect(2), independent of libpq's wording.
    static func nothingListens(at path: String) -> Bool {
        let fd = socket(AF_UNIX, unixStreamCloexec, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result == 0 { return false }
        let error = errno
        return error == ENOENT || error == ECONNREFUSED || error == ENOTDIR
    }

    // MARK: - LSN text

    /// Parses PostgreSQL's LSN text, "16/B374D848" (two hex numbers of at most 8 digits).
    public static func parseLSN(_ text: String) -> UInt64? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2,
            parts.allSatisfy({ !$0.isEmpty && $0.count <= 8 && $0.allSatisfy(\.isHexDigit) }),
            let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16)
        else { return nil }
        return high << 32 | low
    }

    /// Formats an LSN as PostgreSQL does: "16/B374D848" (upper-case hex, no padding).
    public static func formatLSN(_ lsn: UInt64) -> String { ClusterCore.formatLSN(lsn) }

    static func describe(_ duration: Duration) -> String {
        let milliseconds = duration.wholeMilliseconds
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }
}

/// Making a data directory a standby of another server (rejoin). The effector stops the local
/// server before `prepareStandby` and starts it after; `waitUntilStreaming` then confirms.
public enum StandbySetup {
    /// Prepares the (stopped) server in `dataDirectory` to follow `primaryConninfo`.
    ///
    /// With `rewind`, runs `pg_rewind --source-server=<primaryConninfo> --target-pgdata=<dir>`
    /// first. Whether a rewind is needed is left to pg_rewind itself: it compares the timeline
    /// histories of both servers and, when the local history is a prefix of the primary's, says
    /// "no rewind required" and changes nothing — so passing `rewind: true` is always safe and costs
    /// a connection when nothing diverged. pg_rewind first crash-recovers a target that was not
    /// shut down cleanly (it runs `postgres --single`), so an old primary that died works too.
    /// pg_rewind runs as the data directory's owner: via `setpriv` when we are root, directly when
    /// we are that owner. Note that pg_rewind copies the configuration files of the primary's data
    /// directory (postgresql.auto.conf among them), which is why primary_conninfo is written after.
    ///
    /// `restoreTargetWAL` adds `--restore-target-wal` (fetch missing target WAL with the target's
    /// restore_command). `rewindTimeout` bounds pg_rewind; on expiry it is killed (`.timeout`).
    /// Before pg_rewind the new primary is checkpointed if its control file still shows the old
    /// timeline (right after a promote), or pg_rewind would wrongly find nothing to rewind.
    ///
    /// Then writes `standby.signal` and sets `primary_conninfo` (with `application_name`) in
    /// `postgresql.auto.conf`, replacing an existing setting; both files end up owned by the data
    /// directory's owner, mode 0600, written atomically.
    public static func prepareStandby(
        dataDirectory: String, primaryConninfo: String, applicationName: String, rewind: Bool,
        postgresBinDirectory: String = "/usr/lib/postgresql/15/bin", restoreTargetWAL: Bool = false,
        rewindTimeout: Duration = .seconds(600)
    ) throws(DatabaseError) {
        // The data directory belongs to the database owner: no link of theirs is followed
        // (SafeFiles.swift).
        let directory: SafeDirectory
        let owner: (uid: uid_t, gid: gid_t)
        do {
            directory = try SafeDirectory.open(dataDirectory)
            owner = try directory.owner()
        } catch {
            throw DatabaseError(.rejoinFailed, "the data directory \(dataDirectory) cannot be used: \(error.message)")
        }
        // A stale pid file after a crash is fine for pg_rewind (it checks the control file); we
        // only refuse when the postmaster named in it is really running.
        if let pid = postmasterPID(directory), kill(pid, 0) == 0 {
            throw DatabaseError(.rejoinFailed, "PostgreSQL is still running in \(dataDirectory) (pid \(pid)): stop it before rejoining")
        }
        if rewind {
            try checkpointIfTimelineNotInControlFile(primaryConninfo, ownerUID: owner.uid)
            var command = ["\(postgresBinDirectory)/pg_rewind", "--source-server=\(primaryConninfo)", "--target-pgdata=\(dataDirectory)"]
            if restoreTargetWAL { command.append("--restore-target-wal") }
            if getuid() != owner.uid {
                guard getuid() == 0 else {
                    throw DatabaseError(.rejoinFailed, "pg_rewind must run as the owner of \(dataDirectory) (uid \(owner.uid)) or as root")
                }
            }
            command = asOwner(command, owner)
            let result: SubprocessResult
            do { result = try runSubprocess(command, timeout: rewindTimeout) } catch {
                throw DatabaseError(error.timedOut ? .timeout : .rejoinFailed, "pg_rewind of \(dataDirectory): \(error.message)")
            }
            guard result.status == 0 else {
                throw DatabaseError(.rejoinFailed, "pg_rewind of \(dataDirectory) from the new primary failed (\(result.statusText)): \(result.lastLines)")
            }
        }
        // pg_rewind ran as the owner: the directory is opened again (it may have been replaced).
        do {
            let directory = try SafeDirectory.open(dataDirectory)
            try directory.writeOwnedFile("standby.signal", contents: "", uid: owner.uid, gid: owner.gid)
            let existing = try directory.readRegularFile("postgresql.auto.conf") ?? ""
            let conninfo = primaryConninfo + " application_name=" + PostgresConnection.quote(applicationName)
            let updated = replacingSetting("primary_conninfo", with: configQuote(conninfo), in: existing)
            try directory.writeOwnedFile("postgresql.auto.conf", contents: updated, uid: owner.uid, gid: owner.gid)
        } catch {
            throw DatabaseError(.rejoinFailed, error.message)
        }
    }

    /// Polls `controller.status()` every 100 ms until the server is a standby whose WAL receiver
    /// streams, within `timeout`. Fails at once if it turns out to be a primary.
    /// Polls `controller.status()` every 50 ms until the (local) server answers as a standby,
    /// streaming or not, within `timeout`.
    public static func waitUntilStandby(_ controller: DatabaseController, timeout: Duration) throws(DatabaseError) -> DatabaseStatus {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last = controller.status()
        while last.role != .standby {
            if last.role == .primary {
                throw DatabaseError(.rejoinFailed, "the local PostgreSQL started as a primary, not as a standby: standby.signal was not honoured")
            }
            if clock.now >= deadline {
                throw DatabaseError(.timeout, "the local PostgreSQL was still \(last.role.rawValue) after \(DatabaseController.describe(timeout)); check its log")
            }
            sleepFor(.milliseconds(50))
            last = controller.status()
        }
        return last
    }

    public static func waitUntilStreaming(_ controller: DatabaseController, timeout: Duration) throws(DatabaseError) -> DatabaseStatus {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last = controller.status()
        while !(last.role == .standby && last.streaming) {
            if last.role == .primary {
                throw DatabaseError(.rejoinFailed, "the local PostgreSQL started as a primary, not as a standby: standby.signal was not honoured")
            }
            if clock.now >= deadline {
                let state = last.role == .standby ? "a standby that does not stream from the primary" : "\(last.role.rawValue)"
                throw DatabaseError(.timeout, "the local PostgreSQL was still \(state) after \(DatabaseController.describe(timeout)); check its log and primary_conninfo")
            }
            sleepFor(.milliseconds(100))
            last = controller.status()
        }
        return last
    }

    /// pg_rewind reads the source's timeline from its control file, which a freshly promoted server
    /// updates only at its first checkpoint after the promote; until then pg_rewind sees the old
    /// timeline and wrongly decides that no rewind is needed (PostgreSQL's documentation asks for a
    /// CHECKPOINT on the source first). Checkpoints the source when its control file is behind.
    /// Connects as we are (root in the daemon), with the data directory owner's ~/.pgpass when the
    /// conninfo names no passfile, since pg_rewind itself runs as that owner.
    static func checkpointIfTimelineNotInControlFile(_ primaryConninfo: String, ownerUID: uid_t) throws(DatabaseError) {
        let conninfo = withOwnerPassfile(primaryConninfo, ownerUID: ownerUID)
        let failure = { (message: String) in
            DatabaseError(.rejoinFailed, "cannot prepare the new primary (\(primaryConninfo)) for pg_rewind: \(message)")
        }
        let source: PostgresConnection
        let row: [String?]
        do throws(PostgresError) {
            source = try PostgresConnection(conninfo: conninfo)
            guard try source.scalar("SELECT pg_is_in_recovery()") == "f" else {
                throw PostgresError(message: "it is itself in recovery, not a primary")
            }
            row = try source.query("""
                SELECT (SELECT timeline_id FROM pg_control_checkpoint()), pg_walfile_name(pg_current_wal_lsn())
                """).first ?? []
        } catch {
            throw failure(error.message)
        }
        guard row.count == 2, let control = row[0].flatMap({ UInt32($0) }), let walFile = row[1],
            let current = UInt32(walFile.prefix(8), radix: 16)
        else { throw failure("unexpected answer about its timeline: \(row)") }
        if control != current {
            do { try source.query("CHECKPOINT") } catch { throw failure("CHECKPOINT failed: \(error.message)") }
        }
    }

    // MARK: - postgresql.auto.conf

    /// Replaces every `name = ...` line (any case, any spacing) by one `name = value` at the place
    /// of the first, or appends it.
    static func replacingSetting(_ name: String, with value: String, in text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let newLine = "\(name) = \(value)"
        var replaced = false
        lines = lines.compactMap { line in
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            guard trimmed.lowercased().hasPrefix(name.lowercased()) else { return line }
            let rest = trimmed.dropFirst(name.count).drop(while: { $0 == " " || $0 == "\t" })
            guard rest.first == "=" else { return line }
            if replaced { return nil }
            replaced = true
            return newLine
        }
        if !replaced { lines.append(newLine) }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A string value in postgresql.conf syntax: single-quoted, quotes and backslashes doubled
    /// (as pg_basebackup -R writes it).
    static func configQuote(_ value: String) -> String {
        var quoted = "'"
        for character in value {
            if character == "'" || character == "\\" { quoted.append(character) }
            quoted.append(character)
        }
        return quoted + "'"
    }

    static func postmasterPID(_ directory: SafeDirectory) -> pid_t? {
        guard let text = try? directory.readRegularFile("postmaster.pid", limit: 4096),
            let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingSpaces), pid > 0
        else { return nil }
        return pid
    }
}

// MARK: - Subprocesses

struct SubprocessResult {
    /// Exit status, or 128 + signal number when killed by a signal.
    var status: Int32
    var output: String

    var statusText: String { status > 128 ? "killed by signal \(status - 128)" : "exit status \(status)" }

    /// The last few lines of the output, joined, for an error message.
    var lastLines: String {
        let lines = output.split(separator: "\n").map { $0.trimmingSpaces }.filter { !$0.isEmpty }
        return lines.suffix(4).joined(separator: "; ")
    }
}

struct SubprocessError: Error {
    var message: String
    var timedOut = false
}

/// Runs `command` (absolute path first) with posix_spawn in its own process group (in our working directory), stdin from
/// /dev/null, stdout and stderr captured together (the last 64 KiB kept), a default signal
/// disposition and an empty signal mask, LC_ALL=C. On timeout the whole group is killed.
func runSubprocess(
    _ command: [String], timeout: Duration, onOutput: (String) -> Void = { _ in }
) throws(SubprocessError) -> SubprocessResult {
    var fds: [Int32] = [-1, -1]
    // A socket pair rather than pipe2(2), which Swift's Glibc module does not declare: created
    // close-on-exec atomically, so no other child spawned meanwhile keeps our write end open.
    guard socketpair(AF_UNIX, unixStreamCloexec, 0, &fds) == 0 else {
        throw SubprocessError(message: "cannot create a pipe: \(errnoText())")
    }
    defer { if fds[0] >= 0 { close(fds[0]) } }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    var allSignals = sigset_t()
    sigfillset(&allSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

    let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
    let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, command[0], &actions, &attributes, argv, envp)
    close(fds[1])
    fds[1] = -1
    guard spawned == 0 else { throw SubprocessError(message: "cannot run \(command[0]): \(errnoText(spawned))") }

    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 8192)
    var timedOut = false
    while true {
        let left = clock.now.duration(to: deadline)
        if left <= .zero {
            timedOut = true
            break
        }
        var pollfd = Glibc.pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: left.wholeMilliseconds + 1)
        let ready = poll(&pollfd, 1, milliseconds)
        if ready < 0 {
            if errno == EINTR { continue }
            break
        }
        if ready == 0 { continue }
        let count = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            break
        }
        if count == 0 { break }  // every writer closed: the command (and its children) are done
        output.append(contentsOf: buffer[0..<count])
        onOutput(String(decoding: buffer[0..<count], as: UTF8.self))
        if output.count > 65536 { output.removeFirst(output.count - 65536) }
    }
    var status: Int32 = 0
    // The output is closed; the command itself normally is done too, but wait for it within the deadline.
    while !timedOut {
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid || (reaped < 0 && errno != EINTR) { break }
        if clock.now >= deadline { timedOut = true } else { sleepFor(.milliseconds(10)) }
    }
    if timedOut {
        kill(-pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
    if timedOut {
        throw SubprocessError(message: "\(command[0]) did not finish within \(DatabaseController.describe(timeout)) and was killed", timedOut: true)
    }
    // WIFEXITED / WEXITSTATUS / WTERMSIG are macros: decode the wait status by hand.
    let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return SubprocessResult(status: code, output: String(decoding: output, as: UTF8.self))
}

/// SOCK_STREAM | SOCK_CLOEXEC. Spelled with O_CLOEXEC (the same bit on Linux) and the ABI value of
/// SOCK_STREAM because, next to other C modules that include <linux/net.h>, the Glibc names turn
/// ambiguous.
let unixStreamCloexec: Int32 = 1 | O_CLOEXEC

func sleepFor(_ duration: Duration) {
    var request = timespec(tv_sec: Int(duration.components.seconds), tv_nsec: Int(duration.components.attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" || $0 == "\r" }).reversed().drop(while: { $0 == " " || $0 == "\t" || $0 == "\r" }).reversed())
    }
}

extension StandbySetup {
    /// The final WAL position of a cleanly stopped server: pg_controldata's "Latest checkpoint
    /// location" (the shutdown checkpoint). A standby that has replayed up to it has every
    /// transaction the old primary committed. Refuses a server that was not shut down cleanly.
    public static func finalCheckpointLSN(
        dataDirectory: String, postgresBinDirectory: String = "/usr/lib/postgresql/15/bin"
    ) throws(DatabaseError) -> UInt64 {
        let result: SubprocessResult
        do {
            result = try runSubprocess([postgresBinDirectory + "/pg_controldata", "-D", dataDirectory], timeout: .seconds(30))
        } catch {
            throw DatabaseError(.queryFailed, "pg_controldata failed: \(error.message)")
        }
        guard result.status == 0 else {
            throw DatabaseError(.queryFailed, "pg_controldata failed (\(result.statusText)): \(result.output)")
        }
        var state = ""
        var location: UInt64?
        for line in result.output.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let value = parts[1].trimmingCharacters(in: " \t")
            switch parts[0] {
            case "Database cluster state": state = value
            case "Latest checkpoint location": location = DatabaseController.parseLSN(value)
            default: break
            }
        }
        guard state == "shut down" else {
            throw DatabaseError(.queryFailed, "the database in \(dataDirectory) is '\(state)', not shut down cleanly")
        }
        guard let location else { throw DatabaseError(.queryFailed, "pg_controldata gave no checkpoint location") }
        return location
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}
