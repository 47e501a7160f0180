/// Synchronous replication that does not stop the service (`[database] synchronous`).
///
/// On the active node, the primary's `synchronous_standby_names` decides whether a commit
/// waits for the standby. The guard decides, from what the primary reports about its standby
/// and from the peer's health, whether it should name the standby (commits wait for it) or
/// name nobody (commits do not wait):
///
/// - `strict`: always the standby. While it is away, writes wait, as the administrator chose.
/// - `degradable`: the standby while it is there. Once the peer is declared dead, or its
///   replication connection has been gone for the dead time, nobody, so writes go on; the
///   standby again once it streams and is within `max_lag_bytes` (it has caught up).
/// - `off`: kusu-ha leaves the setting alone.
///
/// Pure: the shell feeds it observations and a monotonic instant, and applies the decision
/// through the effector (`SetSynchronousStandby`).
public struct ReplicationGuard: Sendable {
    /// What the active node's primary says about the peer's standby.
    public struct Observation: Sendable, Equatable {
        /// `pg_stat_replication.state` of the peer's connection ("streaming", "catchup",
        /// "startup", "backup", "stopping"); nil when it is not connected.
        public var walSenderState: String?
        /// How far the peer's standby is behind (primary's position − its replay position).
        public var lagBytes: UInt64
        /// The primary's `synchronous_standby_names` as it is now.
        public var synchronousStandbyNames: String

        public init(walSenderState: String?, lagBytes: UInt64 = 0, synchronousStandbyNames: String) {
            self.walSenderState = walSenderState
            self.lagBytes = lagBytes
            self.synchronousStandbyNames = synchronousStandbyNames
        }
    }

    public enum Decision: Sendable, Equatable {
        /// Nothing to change.
        case keep
        /// Set `synchronous_standby_names` to this value (the standby, quoted): commits wait for it.
        case require(String, reason: String)
        /// Set it to '' (commits do not wait for any standby).
        case release(reason: String)
    }

    public let mode: SynchronousMode
    /// The standby's application_name: the peer's node name.
    public let standbyName: String
    /// How long the standby's replication connection may be gone before `degradable` stops
    /// waiting for it (the dead time).
    public let absenceLimit: Duration
    public let maxLagBytes: UInt64
    /// Since when the standby has not been streaming (nil: it streams).
    public private(set) var absentSince: MonotonicInstant?
    /// After a handover (`holdAfterHandover`): until this instant the old primary, named from
    /// the new primary's first commit, counts as present though it is not streaming yet (it is
    /// rejoining): no commit can be acknowledged without it, so it has every acknowledged
    /// transaction. Its absence is counted from the end of the hold.
    public private(set) var heldUntil: MonotonicInstant?

    public init(mode: SynchronousMode, standbyName: String, absenceLimit: Duration, maxLagBytes: UInt64) {
        self.mode = mode
        self.standbyName = standbyName
        self.absenceLimit = absenceLimit
        self.maxLagBytes = maxLagBytes
    }

    /// The value that names the standby: a double-quoted identifier (application names are
    /// compared case-insensitively; quoting keeps names with '-' or upper case intact).
    public var standbySetting: String { Self.quoted(standbyName) }

    public static func quoted(_ name: String) -> String {
        "\"" + name.replacingAll("\"", with: "\"\"") + "\""
    }

    /// Whether `names` (a `synchronous_standby_names` value) makes commits wait for a standby.
    public static func requiresStandby(_ names: String) -> Bool {
        !names.allSatisfy { $0 == " " || $0 == "\t" }
    }

    /// This node took the active role over in a handover (switchover, failback, a failed
    /// resource or a lost service network) and its primary waits for the old primary from its
    /// first commit (the effector named it at the promotion): hold it as present for the
    /// absence limit, however long its rejoin takes to stream. `degradable` only (`strict`
    /// always waits; `off` leaves it alone).
    public mutating func holdAfterHandover(at now: MonotonicInstant) {
        guard mode == .degradable else { return }
        heldUntil = now + absenceLimit
        absentSince = nil
    }

    /// Decides, on every observation. `activePrimary`: this node is active and its database is
    /// the primary (otherwise nothing is decided and the absence clock is reset).
    public mutating func decide(
        activePrimary: Bool, peerState: PeerState, observation: Observation, now: MonotonicInstant
    ) -> Decision {
        guard activePrimary, mode != .off else {
            absentSince = nil
            return .keep
        }
        let streaming = observation.walSenderState == "streaming"
        if streaming {
            absentSince = nil
            heldUntil = nil
        } else if let held = heldUntil {
            if now >= held {
                // The hold is over: absent from its end.
                heldUntil = nil
                absentSince = held
            }
        } else if absentSince == nil {
            absentSince = now
        }
        let required = Self.requiresStandby(observation.synchronousStandbyNames)
        switch mode {
        case .off:
            return .keep
        case .strict:
            guard observation.synchronousStandbyNames != standbySetting else { return .keep }
            return .require(standbySetting, reason: "synchronous = \"strict\": commits always wait for \(standbyName)")
        case .degradable:
            if required {
                if peerState == .dead {
                    return .release(reason: "the standby \(standbyName) is dead: commits no longer wait for it")
                }
                if let since = absentSince, now - since >= absenceLimit {
                    return .release(
                        reason: "the standby \(standbyName) has not streamed for \(Self.describe(now - since)): "
                            + "commits no longer wait for it")
                }
                if streaming && observation.synchronousStandbyNames != standbySetting {
                    // Someone else's setting ('*', another name): make it exactly the peer.
                    return .require(standbySetting, reason: "the standby \(standbyName) is the one commits wait for")
                }
                return .keep
            }
            guard streaming, peerState == .alive || peerState == .late else { return .keep }
            guard observation.lagBytes <= maxLagBytes else { return .keep }
            return .require(
                standbySetting,
                reason: "the standby \(standbyName) streams and has caught up (\(observation.lagBytes) bytes behind): "
                    + "commits wait for it again")
        }
    }

    /// What the active node tells its peer in heartbeats (flag "synchronous"): its primary waits
    /// for the peer's standby on every commit, so the peer has every acknowledged transaction.
    /// `syncState` is the peer's `pg_stat_replication.sync_state`, `walSenderState` its state
    /// (nil: not connected). With exactly the peer named, a streaming peer is the synchronous
    /// standby (PostgreSQL picks the one named standby that streams) even before a fresh
    /// reading says "sync". Under `strict` a named standby counts even while away: no commit is
    /// acknowledged without it.
    ///
    /// During the hold after a handover (`now` before `heldUntil`) the named peer counts too,
    /// streaming or not; the hold ends, and the peer hears so, an absence limit before the
    /// primary may stop waiting for it (absence is counted from the end of the hold).
    public func peerHasEveryCommit(
        activePrimary: Bool, synchronousStandbyNames: String, syncState: String?, walSenderState: String? = nil,
        at now: MonotonicInstant? = nil
    ) -> Bool {
        guard activePrimary, mode != .off, synchronousStandbyNames == standbySetting else { return false }
        if let now, let heldUntil, now < heldUntil { return true }
        return mode == .strict || syncState == "sync" || walSenderState == "streaming"
    }

    static func describe(_ duration: Duration) -> String {
        let ms = duration.wholeMilliseconds
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
