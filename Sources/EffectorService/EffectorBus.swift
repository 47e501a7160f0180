// The org.kusu.Effector1 object (dbus/org.kusu.Effector1.xml is the reference).
//
// Every mutating method follows the same order: validate the arguments against
// the configuration (InvalidArgument / NotConfigured), refuse at once if an
// operation is running (Busy), ask polkit asynchronously (the loop keeps
// serving meanwhile; polkit unavailable means denied), and only then act.
import ClusterAPI
import ClusterCore
public import DBusKit
public import Logging
import SystemSupport

public final class EffectorBus {
    let effector: Effector
    let bus: BusConnection
    let polkit: PolkitAuthority
    let logger: Logger
    let resources: Resources
    let path: ObjectPath = "/org/kusu/Effector1"
    let interface: InterfaceName = "org.kusu.Effector1"

    public init(effector: Effector, bus: BusConnection, logger: Logger) {
        self.effector = effector
        self.bus = bus
        self.polkit = PolkitAuthority(bus: bus)
        self.logger = logger
        self.resources = Resources(configuration: effector.configuration)
    }

    /// Exports the object and takes the bus name.
    public func start() throws(DBusError) {
        try bus.export(makeObject())
        effector.onChange = { [unowned self] changes in
            do {
                try bus.emitPropertiesChanged(path: path, interface: interface, changes.map(\.rawValue).sorted())
            } catch {
                logger.error("cannot emit PropertiesChanged", metadata: ["error": "\(error)"])
            }
        }
        try bus.requestName(BusName(Effector1.busName))
    }

    func makeObject() -> ExportedObject {
        typealias P = Effector1.Property
        let iface = ExportedInterface(name: interface)
        let effector = self.effector

        iface.method(Effector1.Method.takeover, in: [.init("reason", "s")], flags: .unprivileged) { [unowned self] call in
            guard let reason = self.validated(call, resources.reason(call.arguments.first?.string ?? "")) else { return }
            authorize(call, Effector1.Action.takeover, details: ["reason": reason]) { self.run(.takeover, reason: reason, action: Effector1.Action.takeover, call) }
        }
        iface.method(Effector1.Method.takeoverAfterHandover, in: [.init("reason", "s")], flags: .unprivileged) { [unowned self] call in
            guard let reason = self.validated(call, resources.reason(call.arguments.first?.string ?? "")) else { return }
            authorize(call, Effector1.Action.takeover, details: ["reason": reason, "operation": "takeover-after-handover"]) {
                self.run(.takeoverAfterHandover, reason: reason, action: Effector1.Action.takeover, call)
            }
        }
        iface.method(Effector1.Method.release, in: [.init("reason", "s")], flags: .unprivileged) { [unowned self] call in
            guard let reason = self.validated(call, resources.reason(call.arguments.first?.string ?? "")) else { return }
            authorize(call, Effector1.Action.takeover, details: ["reason": reason, "operation": "release"]) {
                self.run(.release, reason: reason, action: Effector1.Action.takeover, call)
            }
        }
        let addressMethods: [(String, (FloatingAddress) -> Operation)] = [
            (Effector1.Method.addAddress, { .addAddress($0) }),
            (Effector1.Method.removeAddress, { .removeAddress($0) }),
            (Effector1.Method.announceAddress, { .announceAddress($0) }),
        ]
        for (member, operation) in addressMethods {
            iface.method(member, in: [.init("address", "s")], flags: .unprivileged) { [unowned self] call in
                guard let address = self.validated(call, resources.floatingAddress(call.arguments.first?.string ?? "")) else { return }
                authorize(
                    call, Effector1.Action.manageAddress,
                    details: ["address": "\(address.address)", "interface": address.interface, "operation": member]
                ) { self.run(operation(address), reason: "\(member) \(address)", action: Effector1.Action.manageAddress, call) }
            }
        }
        iface.method(
            Effector1.Method.probeAddress, in: [.init("address", "s")], out: [.init("answered", "b"), .init("mac", "s")],
            flags: .unprivileged
        ) { [unowned self] call in
            guard let address = self.validated(call, resources.floatingAddress(call.arguments.first?.string ?? "")) else { return }
            authorize(call, Effector1.Action.manageAddress, details: ["address": "\(address.address)", "operation": "probe"], busyIsFine: true) {
                effector.probe(address) { result in
                    switch result {
                    case .success(let probe): call.reply([.boolean(probe.answered), .string(probe.mac)])
                    case .failure(let error): call.fail(Self.busError(error))
                    }
                }
            }
        }
        iface.method(Effector1.Method.promoteDatabase, flags: .unprivileged) { [unowned self] call in
            guard effector.configuration.database != nil else {
                return call.fail(Self.busError(.init(.notConfigured, "no [database] is configured")))
            }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "promote"]) {
                self.run(.promoteDatabase, reason: "PromoteDatabase", action: Effector1.Action.manageDatabase, call)
            }
        }
        iface.method(Effector1.Method.stopDatabase, out: [.init("final_lsn", "t")], flags: .unprivileged) { [unowned self] call in
            guard effector.configuration.database != nil else {
                return call.fail(Self.busError(.init(.notConfigured, "no [database] is configured")))
            }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "stop"]) {
                self.effector.run(.stopDatabase, reason: "StopDatabase", caller: self.polkit.caller(of: call), action: Effector1.Action.manageDatabase) {
                    [effector] result in
                    switch result {
                    case .success: call.reply([.uint64(effector.finalLSN)])
                    case .failure(let error): call.fail(Self.busError(error))
                    }
                }
            }
        }
        iface.method(Effector1.Method.rejoinDatabase, in: [.init("primary", "s")], flags: .unprivileged) { [unowned self] call in
            guard let primary = self.validated(call, resources.primary(call.arguments.first?.string ?? "")) else { return }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "rejoin", "primary": primary.node.name]) {
                self.run(.rejoinDatabase(primary: primary.address), reason: "RejoinDatabase \(primary.node.name)", action: Effector1.Action.manageDatabase, call)
            }
        }
        iface.method(Effector1.Method.followDatabase, in: [.init("primary", "s")], flags: .unprivileged) { [unowned self] call in
            guard let primary = self.validated(call, resources.primary(call.arguments.first?.string ?? "")) else { return }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "follow", "primary": primary.node.name]) {
                self.run(.followDatabase(primary: primary.address), reason: "FollowDatabase \(primary.node.name)", action: Effector1.Action.manageDatabase, call)
            }
        }
        iface.method(Effector1.Method.cloneDatabase, in: [.init("primary", "s"), .init("method", "s")], flags: .unprivileged) {
            [unowned self] call in
            guard let primary = self.validated(call, resources.primary(call.arguments.first?.string ?? "")),
                let method = self.validated(call, resources.cloneMethod(call.arguments.count > 1 ? call.arguments[1].string ?? "" : ""))
            else { return }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "clone", "primary": primary.node.name, "method": method]) {
                self.run(
                    .cloneDatabase(primary: primary.address, method: method), reason: "CloneDatabase \(primary.node.name) \(method)",
                    action: Effector1.Action.manageDatabase, call)
            }
        }
        iface.method(Effector1.Method.setSynchronousStandby, in: [.init("standby", "s")], flags: .unprivileged) { [unowned self] call in
            guard let value = self.validated(call, resources.synchronousStandby(call.arguments.first?.string ?? "")) else { return }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "synchronous-standby", "standby": value]) {
                self.run(.setSynchronousStandby(value), reason: "SetSynchronousStandby '\(value)'", action: Effector1.Action.manageDatabase, call)
            }
        }
        iface.method(Effector1.Method.detachStandbys, flags: .unprivileged) { [unowned self] call in
            guard effector.configuration.database != nil else {
                return call.fail(Self.busError(.init(.notConfigured, "no [database] is configured")))
            }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "detach-standbys"]) {
                self.run(.detachStandbys, reason: "DetachStandbys", action: Effector1.Action.manageDatabase, call)
            }
        }
        iface.method(Effector1.Method.killDatabase, flags: .unprivileged) { [unowned self] call in
            guard effector.configuration.database != nil else {
                return call.fail(Self.busError(.init(.notConfigured, "no [database] is configured")))
            }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "kill"]) {
                self.run(.killDatabase, reason: "KillDatabase", action: Effector1.Action.manageDatabase, call)
            }
        }
        iface.method(
            Effector1.Method.waitForReplay, in: [.init("lsn", "t"), .init("timeout_ms", "u")],
            out: [.init("reached", "b"), .init("replayed", "t")], flags: .unprivileged
        ) { [unowned self] call in
            guard effector.configuration.database != nil else {
                return call.fail(Self.busError(.init(.notConfigured, "no [database] is configured")))
            }
            let lsn = call.arguments.first?.uint64 ?? 0
            let limit = Int(Effector.maximumReplayWait.components.seconds) * 1000
            guard let ms = call.arguments.dropFirst().first?.uint32, (1...limit).contains(Int(ms)) else {
                return call.fail(Self.busError(.init(.invalidArgument, "timeout_ms must be between 1 and \(limit)")))
            }
            authorize(call, Effector1.Action.manageDatabase, details: ["operation": "wait-for-replay"], busyIsFine: true) {
                self.effector.waitForReplay(to: lsn, timeout: .milliseconds(Int(ms))) { result in
                    switch result {
                    case .success(let position): call.reply([.boolean(position.reached), .uint64(position.replayed)])
                    case .failure(let error): call.fail(Self.busError(error))
                    }
                }
            }
        }
        for (member, operation) in [(Effector1.Method.startUnits, Operation.startUnits), (Effector1.Method.stopUnits, .stopUnits)] {
            iface.method(member, flags: .unprivileged) { [unowned self] call in
                authorize(call, Effector1.Action.manageUnits, details: ["units": effector.configuration.units.joined(separator: ","), "operation": member]) {
                    self.run(operation, reason: member, action: Effector1.Action.manageUnits, call)
                }
            }
        }

        iface.property(P.addresses, "as") { .strings(effector.heldAddresses.map(\.description)) }
        iface.property(P.databaseRole, "s") { .string(effector.databaseState.role) }
        iface.property(P.replicationLagBytes, "t") { .uint64(effector.databaseState.replicationLagBytes) }
        iface.property(P.databaseLSN, "t", change: .none) { .uint64(effector.databaseState.lsn) }
        iface.property(P.databaseTimeline, "u") { .uint32(effector.databaseState.timeline) }
        iface.property(P.units, "a(ss)") {
            .array(element: "(ss)", effector.configuration.units.map { .structure([.string($0), .string(effector.unitStates[$0] ?? "unknown")]) })
        }
        iface.property(P.unitStates, "a(sssssut)") {
            .array(element: "(sssssut)", effector.configuration.units.compactMap { unit in
                effector.unitObservations[unit].map { o in
                    .structure([
                        .string(unit), .string(o.loadState), .string(o.activeState), .string(o.subState), .string(o.result),
                        .uint32(o.restarts), .uint64(o.inactiveSince),
                    ])
                }
            })
        }
        iface.property(P.databaseHealth, "(bst)") {
            let health = effector.databaseHealth
            return .structure([.boolean(health.answering), .string(health.detail), .uint64(health.lastAnswerUSec)])
        }
        iface.property(P.replicationState, "s") { .string(effector.databaseState.replicationState) }
        iface.property(P.syncState, "s") { .string(effector.databaseState.syncState) }
        iface.property(P.synchronousStandbyNames, "s") { .string(effector.databaseState.synchronousStandbyNames) }
        iface.property(P.replicationLagSeconds, "d") { .double(effector.databaseState.replicationLagSeconds) }
        iface.property(P.replicationSlot, "s") { .string(effector.databaseState.replicationSlot) }
        iface.property(P.progress, "s") { .string(effector.progress) }
        iface.property(P.replicationLastReplyUSec, "t") { .uint64(effector.databaseState.replicationLastReplyUSec) }
        iface.property(P.busy, "b") { .boolean(effector.busy) }
        iface.property(P.lastOperation, "(sstbs)") {
            let last = effector.lastOperation
            return .structure([
                .string(last?.name ?? ""), .string(last?.reason ?? ""), .uint64(last?.finishedUSec ?? 0),
                .boolean(last?.success ?? false), .string(last?.error ?? ""),
            ])
        }

        let object = ExportedObject(path: path)
        object.add(iface)
        return object
    }

    // MARK: The common path

    func validated<T>(_ call: MethodInvocation, _ result: Result<T, EffectorError>) -> T? {
        switch result {
        case .success(let value): return value
        case .failure(let error):
            call.fail(Self.busError(error))
            return nil
        }
    }

    func authorize(
        _ call: MethodInvocation, _ action: String, details: [String: String], busyIsFine: Bool = false,
        then body: @escaping () -> Void
    ) {
        if effector.busy && !busyIsFine {
            return call.fail(Self.busError(.init(.busy, "another operation is running; try again when Busy is false")))
        }
        polkit.check(
            action, subject: .busName(call.sender), details: details, interactive: call.allowsInteractiveAuthorization,
            privileged: { [polkit] in MonitorUser.isPrivileged(polkit.caller(of: call).uid) }
        ) { [logger, polkit] result in
            if case .limited = result, let error = PolkitAuthority.error(for: result, action: action) {
                // A flood: refused at once, logged once per ten seconds with the count.
                if let count = polkit.limitedReport() {
                    logger.warning(
                        "effector calls refused: too many authorization checks pending",
                        metadata: ["count": "\(count)", "polkit.pending": "\(polkit.pending)", "message.id": "\(MessageID.denied)"])
                }
                return call.fail(error)
            }
            if let error = PolkitAuthority.error(for: result, action: action) {
                let (log, suppressed) = polkit.denialBudget()
                guard log else { return call.fail(error) }
                let caller = polkit.caller(of: call)
                logger.warning(
                    "effector call denied",
                    metadata: [
                        "polkit.action": "\(action)", "dbus.sender": "\(call.sender)", "dbus.member": "\(call.member)",
                        "caller.uid": "\(caller.uid.map(String.init) ?? "?")", "caller.pid": "\(caller.pid.map(String.init) ?? "?")",
                        "caller.unit": "\(caller.unit ?? "?")", "error": "\(error.message)", "message.id": "\(MessageID.denied)",
                        "denials.not.logged": "\(suppressed)",
                    ])
                return call.fail(error)
            }
            body()
        }
    }

    func run(_ operation: Operation, reason: String, action: String, _ call: MethodInvocation) {
        effector.run(operation, reason: reason, caller: polkit.caller(of: call), action: action) { result in
            switch result {
            case .success: call.reply()
            case .failure(let error): call.fail(Self.busError(error))
            }
        }
    }

    static func busError(_ error: EffectorError) -> DBusError {
        DBusError(name: error.busErrorName, message: error.message)
    }
}
