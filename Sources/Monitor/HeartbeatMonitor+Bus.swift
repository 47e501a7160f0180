// The org.kusu.Heartbeat1 object (see dbus/org.kusu.Heartbeat1.xml, the reference).
import ClusterAPI
import ClusterCore
import DBusKit
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
        iface.property(P.epoch, "t") { [unowned self] in .uint64(self.store.state.epoch) }
        iface.property(P.autoFailover, "b") { .boolean(cluster.autoFailover) }
        iface.property(P.maintenance, "b") { .boolean(false) }
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
        // Probing the tie-breakers arrives with automatic switching; until then the
        // property says whether the pair needs none.
        iface.property(P.tieBreakerReachable, "b") { .boolean(cluster.tieBreakers.isEmpty) }
        iface.property(P.packetsReceived, "t", change: .none) { [unowned self] in .uint64(self.packetsReceived) }
        iface.property(P.packetsRejected, "t", change: .none) { [unowned self] in .uint64(self.packetsRejected) }

        iface.signal(Heartbeat1.Signal.peerStateChanged, [.init("peer", "s"), .init("old", "s"), .init("new", "s")])
        iface.signal(Heartbeat1.Signal.roleChanged, [.init("old", "s"), .init("new", "s"), .init("reason", "s")])

        // The switching methods are part of the contract; they answer NotSupported
        // until automatic and manual switching land (they change nothing).
        let notYet: (MethodInvocation) -> Void = { call in
            call.fail(.notSupported("\(call.member) is not available yet: this kusu-hbd monitors the peer but does not switch"))
        }
        iface.method(Heartbeat1.Method.switchover, flags: .unprivileged, notYet)
        iface.method(Heartbeat1.Method.takeover, in: [.init("force", "b")], flags: .unprivileged, notYet)
        iface.method(Heartbeat1.Method.setAutoFailover, in: [.init("enabled", "b")], flags: .unprivileged, notYet)
        iface.method(Heartbeat1.Method.setMaintenance, in: [.init("enabled", "b")], flags: .unprivileged, notYet)

        object.add(iface)
        return object
    }
}
