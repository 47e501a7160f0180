// Fakes of the side effects, for the pure sequencing tests of the engine.
// The real implementations are tested against the kernel, PostgreSQL and systemd.
import ClusterCore
import DBusKit
import EffectorService
import Glibc
import Synchronization

/// A shared journal of what the fakes were asked to do, in order.
final class Journal: Sendable {
    let entries = Mutex<[String]>([])
    func record(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}

final class FakeAddresses: AddressEffects {
    let journal: Journal
    var held: Set<IPAddress> = []
    var failAdd: EffectorError?
    init(_ journal: Journal) { self.journal = journal }

    func add(_ address: FloatingAddress) throws(EffectorError) -> Bool {
        if let failAdd { throw failAdd }
        journal.record("add \(address)")
        return held.insert(address.address).inserted
    }
    func remove(_ address: FloatingAddress) throws(EffectorError) -> Bool {
        journal.record("remove \(address)")
        return held.remove(address.address) != nil
    }
    func holds(_ address: FloatingAddress) -> Bool? { held.contains(address.address) }
    func announce(_ address: FloatingAddress) throws(EffectorError) { journal.record("announce \(address.address)") }
    let prober: @Sendable (FloatingAddress) -> Result<AddressProbe, EffectorError> = { address in
        .success(AddressProbe(answered: address.address == IPAddress("198.18.1.100"), mac: "02:00:00:00:00:01"))
    }
}

final class FakeDatabase: DatabaseEffects {
    let journal: Journal
    let role: Mutex<String>
    let lag: UInt64
    let maxLag: UInt64

    init(_ journal: Journal, role: String, lag: UInt64 = 0, maxLag: UInt64 = 1_048_576) {
        self.journal = journal
        self.role = Mutex(role)
        self.lag = lag
        self.maxLag = maxLag
    }

    func status() -> DatabaseSnapshot { DatabaseSnapshot(role: role.withLock { $0 }, lsn: 100, timeline: 1) }
    func promote(ignoreLag: Bool) throws(EffectorError) -> DatabaseSnapshot {
        let current = role.withLock { $0 }
        guard current == "standby" else { throw EffectorError(.databaseNotStandby, "the database is \(current), not a standby") }
        guard ignoreLag || lag <= maxLag else { throw EffectorError(.replicationLag, "lag \(lag) > \(maxLag)") }
        journal.record("promote")
        role.withLock { $0 = "primary" }
        return DatabaseSnapshot(role: "primary", lsn: 200, timeline: 2)
    }
    func makeStandby(primary: IPAddress, method: String, progress: @escaping @Sendable (String) -> Void) throws(EffectorError) -> String {
        journal.record("makeStandby \(primary) \(method)")
        progress("copying")
        role.withLock { $0 = "standby" }
        return method == "auto" ? "rewind" : method
    }
    func setSynchronousStandbyNames(_ value: String) throws(EffectorError) {
        journal.record("synchronous '\(value)'")
    }
    func finalCheckpointLSN() throws(EffectorError) -> UInt64 {
        journal.record("finalCheckpointLSN")
        return 4242
    }

    func ensureReplicationSlot(_ name: String) throws(EffectorError) -> Bool {
        journal.record("slot \(name)")
        return true
    }

    func detachStandbys() throws(EffectorError) -> Int {
        let current = role.withLock { $0 }
        guard current == "primary" else { throw EffectorError(.invalidArgument, "the database is \(current), not the primary") }
        journal.record("detachStandbys")
        return 1
    }

    /// What the health query does: answer (nil), fail at once (the message), or hang until
    /// `health` changes (at most 10 s).
    enum HealthBehaviour: Sendable, Equatable { case answer, fail(String), hang }
    let health = Mutex(HealthBehaviour.answer)
    func healthQuery(timeout: Duration) -> String? {
        for _ in 0..<10_000 {
            switch health.withLock({ $0 }) {
            case .answer: return nil
            case .fail(let message): return message
            case .hang: usleep(1000)
            }
        }
        return "still hung after 10 s"
    }

    func waitForReplay(to lsn: UInt64, timeout: Duration) throws(EffectorError) -> (reached: Bool, replayed: UInt64) {
        let current = role.withLock { $0 }
        guard current == "standby" else { throw EffectorError(.databaseNotStandby, "the database is \(current), not a standby") }
        journal.record("waitForReplay \(lsn)")
        return (lsn <= 100, 100)
    }

    func follow(primary: IPAddress) throws(EffectorError) {
        journal.record("follow \(primary)")
        role.withLock { $0 = "standby" }
    }

    func waitUntilStandby() throws(EffectorError) -> DatabaseSnapshot {
        journal.record("waitUntilStandby")
        return DatabaseSnapshot(role: "standby", lsn: 300, timeline: 2)
    }

    func waitUntilStreaming() throws(EffectorError) -> DatabaseSnapshot {
        journal.record("waitUntilStreaming")
        return DatabaseSnapshot(role: "standby", lsn: 300, timeline: 2)
    }
}

final class FakeUnits: UnitEffects {
    let journal: Journal
    var active: Set<String> = []
    var failing: Set<String> = []
    /// Called for each unit started (a test's stand-in for what the unit does).
    var onStart: ((String) -> Void)?
    init(_ journal: Journal) { self.journal = journal }

    func start(_ units: [String], completion: @escaping (Result<Void, EffectorError>) -> Void) {
        for unit in units {
            journal.record("start \(unit)")
            if failing.contains(unit) { return completion(.failure(EffectorError(.unitFailed, "\(unit): failed"))) }
            active.insert(unit)
            onStart?(unit)
        }
        completion(.success(()))
    }
    func stop(_ units: [String], completion: @escaping (Result<Void, EffectorError>) -> Void) {
        for unit in units {
            journal.record("stop \(unit)")
            active.remove(unit)
        }
        completion(.success(()))
    }
    func stopKilling(_ unit: String, completion: @escaping (Result<Void, EffectorError>) -> Void) {
        journal.record("kill \(unit)")
        active.remove(unit)
        completion(.success(()))
    }
    func observations(_ units: [String], completion: @escaping ([String: UnitObservation]) -> Void) {
        completion(Dictionary(uniqueKeysWithValues: units.map { ($0, UnitObservation(activeState: active.contains($0) ? "active" : "inactive")) }))
    }
}
