// The KUSU PostgreSQL for the effector: libpq (DatabaseController) behind DatabaseEffects.
// Called on worker threads (EventLoop.perform): a fresh controller per call, nothing shared.
import ClusterCore
import Effector

struct PostgresDatabase: DatabaseEffects {
    let settings: DatabaseSettings
    let localNode: String
    let promoteTimeout: Duration = .seconds(60)
    let streamingTimeout: Duration = .seconds(120)

    init(settings: DatabaseSettings, localNode: String) {
        self.settings = settings
        self.localNode = localNode
    }

    func status() -> DatabaseSnapshot {
        Self.snapshot(DatabaseController(settings: settings).status())
    }

    func promote(ignoreLag: Bool) throws(EffectorError) -> DatabaseSnapshot {
        do {
            return Self.snapshot(try DatabaseController(settings: settings).promote(ignoreLag: ignoreLag, timeout: promoteTimeout))
        } catch {
            throw Self.effectorError(error)
        }
    }

    func prepareStandby(primary: IPAddress, applicationName: String) throws(EffectorError) {
        let conninfo = PostgresConnection.conninfo([
            ("host", "\(primary)"), ("port", "\(settings.port)"), ("user", settings.user),
            ("application_name", applicationName), ("connect_timeout", "5"),
        ])
        do {
            try StandbySetup.prepareStandby(
                dataDirectory: settings.dataDirectory, primaryConninfo: conninfo, applicationName: applicationName, rewind: true)
        } catch {
            throw Self.effectorError(error)
        }
    }

    func waitUntilStreaming() throws(EffectorError) -> DatabaseSnapshot {
        do {
            return Self.snapshot(try StandbySetup.waitUntilStreaming(DatabaseController(settings: settings), timeout: streamingTimeout))
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

    static func snapshot(_ status: DatabaseStatus) -> DatabaseSnapshot {
        DatabaseSnapshot(
            role: status.role.rawValue, lsn: status.lsn, timeline: status.timeline,
            replicationLagBytes: status.replicationLagBytes)
    }

    static func effectorError(_ error: DatabaseError) -> EffectorError {
        switch error.code {
        case .notStandby: EffectorError(.databaseNotStandby, error.message)
        case .replicationLag: EffectorError(.replicationLag, error.message)
        default: EffectorError(.failed, error.message)
        }
    }
}
