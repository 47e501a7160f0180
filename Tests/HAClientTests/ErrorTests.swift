import DBusKit
import HAClient
import Testing

@Suite struct ErrorMapping {
    static let table: [(Service, String, String, String, HAClient.ExitStatus)] = [
        (.effector, "org.freedesktop.DBus.Error.AccessDenied",
         "Not authorized to perform org.kusu.effector1.manage-units",
         "not authorized: Not authorized to perform org.kusu.effector1.manage-units", .notAuthorized),
        (.heartbeat, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", "Interactive authentication required.",
         "not authorized: Interactive authentication required.", .notAuthorized),
        (.heartbeat, "org.freedesktop.DBus.Error.ServiceUnknown",
         "The name org.kusu.Heartbeat1 was not provided by any .service files", "kusu-hbd is not running", .unreachable),
        (.effector, "org.freedesktop.DBus.Error.NameHasNoOwner", "no owner", "kusu-effectord is not running", .unreachable),
        (.effector, "org.freedesktop.DBus.Error.NoReply", "Did not receive a reply",
         "kusu-effectord did not answer: Did not receive a reply", .unreachable),
        (.heartbeat, "org.freedesktop.DBus.Error.NotSupported", "Takeover is not available yet",
         "Takeover is not available yet", .failed),
        (.effector, "org.kusu.Effector1.Error.NotConfigured", "198.18.0.101 is not a floating address of this cluster",
         "NotConfigured: 198.18.0.101 is not a floating address of this cluster", .failed),
        (.effector, "org.kusu.Effector1.Error.Busy", "another operation is running",
         "Busy: another operation is running", .failed),
        (.effector, "org.kusu.Effector1.Error.UnitFailed", "", "UnitFailed", .failed),
        (.effector, "org.freedesktop.DBus.Error.InvalidArgs", "bad", "org.freedesktop.DBus.Error.InvalidArgs: bad", .failed),
    ]

    @Test(arguments: 0..<table.count)
    func mapping(row: Int) {
        let (service, name, message, line, status) = Self.table[row]
        let e = ClientError.call(service, DBusError(name: name, message: message))
        #expect(e.line == line)
        #expect(e.exitStatus == status)
    }

    @Test func noBus() {
        let e = ClientError(.noBus(DBusError(name: "org.freedesktop.DBus.Error.FileNotFound",
                                             message: "sd_bus_open_system: No such file or directory")))
        #expect(e.line == "cannot connect to the system bus: sd_bus_open_system: No such file or directory")
        #expect(e.exitStatus == .unreachable)
    }

    @Test func exitStatusValues() {
        #expect([HAClient.ExitStatus.success, .failed, .notAuthorized, .unreachable, .usage].map(\.rawValue) == [0, 1, 3, 4, 64])
    }
}

@Suite struct WatchLines {
    func message(_ path: String, _ interface: String, _ member: String, _ args: [Value]) -> String? {
        Events.describe(path: path, interface: interface, member: member, arguments: args)
    }

    @Test func signals() {
        #expect((message("/org/kusu/Heartbeat1", "org.kusu.Heartbeat1", "PeerStateChanged",
                                        [.string("failover"), .string("alive"), .string("dead")]))
            == "kusu-hbd: peer failover alive -> dead")
        #expect((message("/org/kusu/Heartbeat1", "org.kusu.Heartbeat1", "RoleChanged",
                                        [.string("standby"), .string("active"), .string("peer dead")]))
            == "kusu-hbd: role standby -> active (peer dead)")
        #expect((message("/org/kusu/Effector1", "org.freedesktop.DBus.Properties", "PropertiesChanged", [
            .string("org.kusu.Effector1"),
            .vardict(["Busy": .boolean(false), "Addresses": .strings(["198.18.0.100/24"])]),
            .strings(["DatabaseLSN"]),
        ])) == "kusu-effectord: Addresses=[198.18.0.100/24] Busy=false DatabaseLSN changed")
        #expect((message("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged",
                                        [.string("org.kusu.Effector1"), .string(""), .string(":1.9")]))
            == "kusu-effectord: started (:1.9)")
        #expect((message("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged",
                                        [.string("org.kusu.Heartbeat1"), .string(":1.3"), .string("")]))
            == "kusu-hbd: stopped (left the bus)")
        #expect((message("/other", "x.Y", "Z", [])) == nil)
    }

    @Test func rules() {
        #expect(Events.matchRules.count == 6)
        #expect(Events.matchRules.contains(
            "type='signal',path='/org/kusu/Effector1',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',arg0='org.kusu.Effector1'"))
    }
}
