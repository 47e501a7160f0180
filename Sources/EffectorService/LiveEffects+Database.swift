// The KUSU PostgreSQL for the effector: libpq (DatabaseController) behind DatabaseEffects.
// Called on worker threads (EventLoop.perform): a fresh controller per call, nothing shared.
import ClusterCore
import Effector

struct PostgresDatabase: DatabaseEffects {
    let settings: DatabaseSettings
    let localNode: String
    let peerNode: String
    let promoteTimeout: Duration = .seconds(60)
    let streamingTimeout: Duration = .seconds(120)

    init(settings: DatabaseSettings, localNode: String, peerNode: String) {
        self.settings = settings
        self.localNode = localNode
        self.peerNode = peerNode
    }

    var controller: DatabaseController { DatabaseController(settings: settings, peerName: peerNode) }

    func status() -> DatabaseSnapshot {
        Self.snapshot(controller.status())
    }

    func promote(ignoreLag: Bool) throws(EffectorError) -> DatabaseSnapshot {
        do {
            return Self.snapshot(try controller.promote(ignoreLag: ignoreLag, timeout: promoteTimeout))
        } catch {
            throw Self.effectorError(error)
        }
    }

    /// How this node's standby connects to `primary`.
    func primaryConninfo(_ primary: IPAddress) -> String {
        PostgresConnection.conninfo([
            ("host", "\(primary)"), ("port", "\(settings.port)"), ("user", settings.user),
            ("application_name", localNode), ("connect_timeout", "5"),
        ])
    }

    func follow(primary: IPAddress) throws(EffectorError) {
        do {
            try StandbySetup.follow(
                dataDirectory: settings.dataDirectory, primaryConninfo: primaryConninfo(primary), applicationName: localNode,
                slot: DatabaseSettings.slotName(for: localNode))
        } catch {
            throw Self.effectorError(error)
        }
    }

    func waitUntilStandby() throws(EffectorError) -> DatabaseSnapshot {
        do {
            return Self.snapshot(try StandbySetup.waitUntilStandby(controller, timeout: .seconds(60)))
        } catch {
            throw Self.effectorError(error)
        }
    }

    func makeStandby(primary: IPAddress, method: String, progress: @escaping @Sendable (String) -> Void) throws(EffectorError) -> String {
        guard let method = CloneMethod(rawValue: method) else {
            throw EffectorError(.invalidArgument, "unknown clone method '\(method)'")
        }
        let conninfo = primaryConninfo(primary)
        do {
            return try StandbySetup.makeStandby(
                dataDirectory: settings.dataDirectory, primaryConninfo: conninfo, applicationName: localNode,
                slot: DatabaseSettings.slotName(for: localNode), method: method, progress: progress
            ).rawValue
        } catch {
            throw Self.effectorError(error)
        }
    }

    func setSynchronousStandbyNames(_ value: String) throws(EffectorError) {
        do {
            try controller.setSynchronousStandbyNames(value)
        } catch {
            throw Self.effectorError(error)
        }
    }

    func waitUntilStreaming() throws(EffectorError) -> DatabaseSnapshot {
        do {
            return Self.snapshot(try StandbySetup.waitUntilStreaming(controller, timeout: streamingTimeout))
        } catch {
            throw Self.effectorError(error)
        }
    }

    func finalCheckpointLSN() throws(EffectorError) -> UInt64 {
        do {
            return try StandbySetup.finalCheckpointLSN(dataDirectory: settings.dataDirectory)
        } catch {
            throw Self.effectorError(error)
        }
    }

    func ensureReplicationSlot(_ name: String) throws(EffectorError) -> Bool {
        do {
            return try controller.ensureReplicationSlot(name)
        } catch {
            throw Self.effectorError(error)
        }
    }

    func detachStandbys() throws(EffectorError) -> Int {
        do {
            return try controller.terminateReplicationConnections()
        } catch {
            throw Self.effectorError(error)
        }
    }

    func healthQuery(timeout: Duration) -> String? {
        do {
            _ = try controller.healthQuery(timeout: timeout)
            return nil
        } catch {
            return error.message
        }
    }

    func waitForReplay(to lsn: UInt64, timeout: Duration) throws(EffectorError) -> (reached: Bool, replayed: UInt64) {
        do {
            return try controller.waitForReplay(to: lsn, timeout: timeout)
        } catch {
            throw Self.effectorError(error)
        }
    }

    static func snapshot(_ status: DatabaseStatus) -> DatabaseSnapshot {
        var snapshot = DatabaseSnapshot(
            role: status.role.rawValue, lsn: status.lsn, timeline: status.timeline,
            replicationLagBytes: status.replicationLagBytes, replicationState: status.replication.state ?? "",
            syncState: status.replication.syncState ?? "", synchronousStandbyNames: status.replication.synchronousStandbyNames,
            replicationLagSeconds: status.replication.lagSeconds, replicationSlot: status.replication.slot)
        snapshot.replicationLastReplyUSec = status.replication.lastReplyUSec
        return snapshot
    }

    static func effectorError(_ error: DatabaseError) -> EffectorError {
        switch error.code {
        case .notStandby: EffectorError(.databaseNotStandby, error.message)
        case .replicationLag: EffectorError(.replicationLag, error.message)
        case .notPrimary: EffectorError(.invalidArgument, error.message)
        default: EffectorError(.failed, error.message)
        }
    }
}
