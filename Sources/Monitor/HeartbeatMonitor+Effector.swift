// What kusu-hbd knows of its effector: the properties of org.kusu.Effector1, read once a
// second (GetAll) and followed between reads from its PropertiesChanged signals, so a unit that
// fails or a database that stops answering is acted on at once, not at the next poll.
import ClusterAPI
import ClusterCore
import DBusKit
import Logging

/// What kusu-hbd last read from the effector.
struct EffectorView {
    var reachable = false
    var busy = false
    /// DatabaseLSN: the primary's current WAL position or the standby's replay position.
    var lsn: UInt64?
    var databaseRole: String?
    /// Primary: the peer's replication connection state, its sync_state, the lag of the
    /// worst standby, and synchronous_standby_names ("" / nil when unknown).
    var replicationState: String?
    var syncState: String?
    var lagBytes: UInt64 = 0
    var synchronousStandbyNames: String?
    /// Primary: the last reply (or the start) of the peer's replication connection (CLOCK_REALTIME µs).
    var replicationLastReplyUSec: UInt64 = 0
    /// What systemd says of each configured unit (UnitStates; nil: not reported).
    var units: [String: UnitObservation]?
    /// The database health query's verdict (DatabaseHealth; nil: not reported).
    var databaseHealth: DatabaseObservation?
    /// The last reading of the database as a primary: while it is then unreadable (hung) or
    /// down it acknowledges nothing, so what it said about its standby still stands.
    var lastPrimary: PrimaryFacts?

    struct PrimaryFacts: Equatable {
        var synchronousStandbyNames: String
        var syncState: String?
        /// The peer's replication connection, if it was a live one then.
        var liveWalSenderState: String?
        var lsn: UInt64
    }

    /// Applies the properties given (all of them from GetAll, the changed ones from a signal).
    mutating func apply(_ properties: [String: Value]) {
        typealias P = Effector1.Property
        reachable = true
        if let value = properties[P.busy]?.bool { busy = value }
        if let value = properties[P.databaseLSN]?.uint64 { lsn = value }
        if let value = properties[P.databaseRole]?.string { databaseRole = value }
        if let value = properties[P.replicationState]?.string { replicationState = value.isEmpty ? nil : value }
        if let value = properties[P.replicationLastReplyUSec]?.uint64 { replicationLastReplyUSec = value }
        if let value = properties[P.syncState]?.string { syncState = value.isEmpty ? nil : value }
        if let value = properties[P.replicationLagBytes]?.uint64 { lagBytes = value }
        if let value = properties[P.synchronousStandbyNames]?.string { synchronousStandbyNames = value }
        if let array = properties[P.unitStates]?.array {
            var observed: [String: UnitObservation] = [:]
            for entry in array {
                guard let f = entry.structure, f.count == 7, let name = f[0].string, let load = f[1].string, let active = f[2].string,
                    let sub = f[3].string, let result = f[4].string, let restarts = f[5].uint32, let since = f[6].uint64
                else { continue }
                observed[name] = UnitObservation(
                    loadState: load, activeState: active, subState: sub, result: result, restarts: restarts, inactiveSince: since)
            }
            units = observed
        }
        if let f = properties[P.databaseHealth]?.structure, f.count == 3, let answering = f[0].bool, let detail = f[1].string {
            databaseHealth = DatabaseObservation(answering: answering, detail: detail)
        }
    }
}

extension HeartbeatMonitor {
    var effectorName: BusName { BusName.init(stringLiteral: Effector1.busName) }
    var effectorPath: ObjectPath { ObjectPath.init(stringLiteral: Effector1.objectPath) }
    var effectorInterface: InterfaceName { InterfaceName.init(stringLiteral: Effector1.interface) }

    /// Reads the effector's state once a second (its database LSN goes into our heartbeats and
    /// into the lag check).
    func pollEffector() {
        effectorPoll?.reschedule(at: loop.now + .seconds(1))
        _ = try? bus.getAllProperties(destination: effectorName, path: effectorPath, interface: effectorInterface, timeout: .seconds(2)) {
            [unowned self] result in
            switch result {
            case .success(let properties): effectorChanged(properties)
            case .failure: effectorChanged(nil)
            }
            if let until = requestSwitchoverUntil, loop.now > until {
                requestSwitchoverUntil = nil
                finishSwitchover(.failure(.failed(
                    "the active peer \(configuration.peerNode.name) did not hand over within 60 s; its journal (kusu-hbd) says why")))
            }
            checkHandoverProgress()
            evaluateFailedRole()
            evaluateRejoin()
            evaluateFailback()
            evaluateReplication()
        }
    }

    /// Calls `member` of org.kusu.Effector1 (bus-activated on first use): the one way kusu-hbd
    /// asks its effector to act. `reply` runs on the loop — also with the error when the call
    /// could not be sent.
    func callEffector(
        _ member: String, _ arguments: [Value] = [], timeout: Duration, reply: @escaping (Result<[Value], DBusError>) -> Void
    ) {
        do {
            _ = try bus.call(
                destination: effectorName, path: effectorPath, interface: effectorInterface, member: MemberName(member), arguments,
                timeout: timeout, reply: reply)
        } catch {
            reply(.failure(error))
        }
    }

    /// Follows the effector's PropertiesChanged between polls.
    func followEffectorSignals() throws(DBusError) -> Subscription {
        try bus.addMatch(
            "type='signal',sender='\(Effector1.busName)',path='\(Effector1.objectPath)',"
                + "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',arg0='\(Effector1.interface)'"
        ) { [unowned self] signal in
            guard signal.arguments.count >= 2, let changed = signal.arguments[1].stringKeyedDictionary else { return }
            effectorChanged(changed.mapValues { $0.variant ?? $0 })
        }
    }

    /// New properties of the effector (nil: it could not be read), from a poll or a signal.
    func effectorChanged(_ properties: [String: Value]?) {
        let before = (effector.busy, effector.databaseRole)
        if let properties {
            effector.apply(properties)
        } else {
            effector = EffectorView(lastPrimary: effector.lastPrimary)
        }
        if effector.databaseRole == "primary", let names = effector.synchronousStandbyNames {
            effector.lastPrimary = EffectorView.PrimaryFacts(
                synchronousStandbyNames: names, syncState: effector.syncState, liveWalSenderState: liveWalSenderState,
                lsn: effector.lsn ?? effector.lastPrimary?.lsn ?? 0)
        } else if effector.databaseRole == "standby" {
            effector.lastPrimary = nil
        }
        if before != (effector.busy, effector.databaseRole) || tracker.peerHandover { evaluateAutomatic() }
        observeEffectorHealth()
    }
}
