// The org.kusu.Heartbeat1 object (see dbus/org.kusu.Heartbeat1.xml, the reference).
import ClusterAPI
import ClusterCore
import DBusKit
import Logging
import SystemSupport

extension HeartbeatMonitor {
    func makeBusObject() throws(DBusError) -> ExportedObject {
        typealias P = Heartbeat1.Property
        let object = ExportedObject(path: path)
        let iface = ExportedInterface(name: interface)
        let cluster = configuration.cluster
        let local = configuration.localNode
        let peer = configuration.peerNode

        iface.property(P.clusterName, "s", change: .const) { .string(cluster.name) }
        iface.property(P.nodeName, "s", change: .const) { .string(local.name) }
        iface.property(P.role, "s") { [unowned self] in .string(self.role.rawValue) }
        iface.property(P.epoch, "t") { [unowned self] in .uint64(self.roles.epoch) }
        iface.property(P.autoFailover, "b") { [unowned self] in .boolean(self.autoFailover) }
        iface.property(P.maintenance, "b") { [unowned self] in .boolean(self.maintenance) }
        iface.property(P.peerName, "s", change: .const) { .string(peer.name) }
        iface.property(P.peerState, "s") { [unowned self] in .string(self.tracker.state.rawValue) }
        iface.property(P.peerRole, "s") { [unowned self] in .string(self.tracker.peerRole?.rawValue ?? "unknown") }
        iface.property(P.peerEpoch, "t") { [unowned self] in .uint64(self.tracker.peerEpoch) }
        iface.property(P.peerLastSeenUSec, "t") { [unowned self] in .uint64(self.tracker.lastSeenWallClock) }
        iface.property(P.links, "a(ssbt)") { [unowned self] in
            .array(
                element: "(ssbt)",
                self.tracker.links.enumerated().map { index, link in
                    .structure([
                        .string("link\(index)"), .string("\(peer.addresses[index])"),
                        .boolean(link.up), .uint64(link.lastSeenWallClock),
                    ])
                })
        }
        iface.property(P.tieBreakerReachable, "b") { [unowned self] in
            .boolean(self.tieBreaker?.reachable ?? cluster.tieBreakers.isEmpty)
        }
        iface.property(P.peerTieBreakerReachable, "b") { [unowned self] in .boolean(self.tracker.peerReachesTieBreaker) }
        iface.property(P.synchronous, "s") { [unowned self] in .string(self.synchronousState) }
        iface.property(P.serviceLossReadiness, "(bs)", change: .none) { [unowned self] in
            let readiness = self.serviceLossReadiness
            return .structure([.boolean(readiness.ready), .string(readiness.reason)])
        }
        iface.property(P.failoverReadiness, "(bs)", change: .none) { [unowned self] in
            let readiness = self.failoverReadiness
            return .structure([.boolean(readiness.ready), .string(readiness.reason)])
        }
        iface.property(P.fileSync, "a(ssttts)", change: .none) { [unowned self] in
            .array(element: "(ssttts)", self.fileSyncEntries.map { tree in
                .structure([
                    .string(tree.path), .string(tree.state), .uint64(tree.lastSuccessUSec), .uint64(tree.lastAttemptUSec),
                    .uint64(tree.sinceUSec), .string(tree.message),
                ])
            })
        }
        iface.property(P.resources, "a(sssutbs)") { [unowned self] in
            .array(element: "(sssutbs)", self.resourceEntries.map { entry in
                .structure([
                    .string(entry.name), .string(entry.kind), .string(entry.state), .uint32(entry.failures),
                    .uint64(entry.lastFailureUSec), .boolean(entry.failedOnPeer), .string(entry.detail),
                ])
            })
        }
        iface.property(P.serviceReady, "(bs)") { [unowned self] in
            let readiness = self.serviceReadiness
            return .structure([.boolean(readiness.ready), .string(readiness.reason)])
        }
        iface.property(P.peerServiceReady, "b") { [unowned self] in .boolean(self.tracker.peerServiceReady) }
        iface.property(P.serviceFaultReadiness, "(bs)", change: .none) { [unowned self] in
            let readiness = self.serviceFaultReadiness
            return .structure([.boolean(readiness.ready), .string(readiness.reason)])
        }
        iface.property(P.packetsReceived, "t", change: .none) { [unowned self] in .uint64(self.packetsReceived) }
        iface.property(P.packetsRejected, "t", change: .none) { [unowned self] in .uint64(self.packetsRejected) }

        iface.signal(Heartbeat1.Signal.peerStateChanged, [.init("peer", "s"), .init("old", "s"), .init("new", "s")])
        iface.signal(Heartbeat1.Signal.roleChanged, [.init("old", "s"), .init("new", "s"), .init("reason", "s")])

        iface.method(Heartbeat1.Method.switchover, flags: .unprivileged) { [unowned self] call in
            authorize(call, Heartbeat1.Action.switchover, details: [:]) { self.switchover(call) }
        }
        iface.method(Heartbeat1.Method.takeover, in: [.init("force", "b")], flags: .unprivileged) { [unowned self] call in
            let force = call.arguments.first?.bool ?? false
            authorize(call, Heartbeat1.Action.takeover, details: ["force": force ? "true" : "false"]) {
                self.manualTakeover(call, force: force)
            }
        }
        iface.method(
            Heartbeat1.Method.preflight, in: [.init("operation", "s")], out: [.init("allowed", "b"), .init("reason", "s")],
            flags: .unprivileged  // anyone may ask; it changes nothing
        ) { [unowned self] call in
            switch self.preflight(call.arguments.first?.string ?? "") {
            case .success(let verdict): call.reply([.boolean(verdict.allowed), .string(verdict.reason)])
            case .failure(let error): call.fail(error)
            }
        }
        iface.method(Heartbeat1.Method.setAutoFailover, in: [.init("enabled", "b")], flags: .unprivileged) { [unowned self] call in
            let enabled = call.arguments.first?.bool ?? false
            authorize(call, Heartbeat1.Action.setAutoFailover, details: ["enabled": enabled ? "true" : "false"]) {
                self.setSwitch(call, autoFailover: enabled)
            }
        }
        iface.method(Heartbeat1.Method.setMaintenance, in: [.init("enabled", "b")], flags: .unprivileged) { [unowned self] call in
            let enabled = call.arguments.first?.bool ?? false
            authorize(call, Heartbeat1.Action.setMaintenance, details: ["enabled": enabled ? "true" : "false"]) {
                self.setSwitch(call, maintenance: enabled)
            }
        }

        iface.method(Heartbeat1.Method.cleanupResource, in: [.init("name", "s")], flags: .unprivileged) { [unowned self] call in
            let name = call.arguments.first?.string ?? ""
            // Validate, then authorise, then act.
            guard isResource(name) else {
                let known = health.records.map(\.spec.name).joined(separator: ", ")
                return call.fail(.invalidArgs("no resource named '\(name)' (known: \(known); \"\" for all)"))
            }
            authorize(call, Heartbeat1.Action.cleanupResource, details: ["resource": name.isEmpty ? "all" : name]) {
                self.cleanupResource(call, name)
            }
        }

        object.add(iface)
        return object
    }
}

extension HeartbeatMonitor {
    /// Asks polkit (asynchronously; unavailable means denied), then runs `body`.
    func authorize(_ call: MethodInvocation, _ action: String, details: [String: String], then body: @escaping () -> Void) {
        polkit.check(
            action, subject: .busName(call.sender), details: details, interactive: call.allowsInteractiveAuthorization,
            privileged: { [polkit] in MonitorUser.isPrivileged(polkit.caller(of: call).uid) }
        ) {
            [unowned self] result in
            if case .limited = result, let error = PolkitAuthority.error(for: result, action: action) {
                // A flood: refused at once, logged once per ten seconds with the count.
                if let count = polkit.limitedReport() {
                    logger.warning(
                        "heartbeat calls refused: too many authorization checks pending",
                        metadata: ["count": "\(count)", "polkit.pending": "\(polkit.pending)", "message.id": "\(MessageID.denied)"])
                }
                return call.fail(error)
            }
            if let error = PolkitAuthority.error(for: result, action: action) {
                let (log, suppressed) = polkit.denialBudget()
                guard log else { return call.fail(error) }
                let caller = polkit.caller(of: call)
                logger.warning(
                    "heartbeat call denied",
                    metadata: [
                        "polkit.action": "\(action)", "dbus.member": "\(call.member)",
                        "caller.uid": "\(caller.uid.map(String.init) ?? "?")", "caller.pid": "\(caller.pid.map(String.init) ?? "?")",
                        "error": "\(error.message)", "message.id": "\(MessageID.denied)",
                        "denials.not.logged": "\(suppressed)",
                    ])
                return call.fail(error)
            }
            body()
        }
    }
}
