import DBusKit
import Foundation
import Testing

private let kusuActions = [
    "org.kusu.heartbeat1.switchover", "org.kusu.heartbeat1.takeover",
    "org.kusu.heartbeat1.set-auto-failover", "org.kusu.heartbeat1.set-maintenance", "org.kusu.heartbeat1.cleanup-resource",
    "org.kusu.effector1.takeover", "org.kusu.effector1.manage-address",
    "org.kusu.effector1.manage-database", "org.kusu.effector1.manage-units",
]
private let accessDenied = "org.freedesktop.DBus.Error.AccessDenied"
private let interactiveRequired = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"

/// Test-only rules, evaluated before the project's (file 00-kusu-test.rules).
/// FIFO is replaced by the path of a FIFO polkitd blocks on ("hold" detail).
private let polkitTestRules = """
    polkit.addRule(function(action, subject) {
        if (action.lookup("hold") == "yes") {
            // Blocks polkitd until the test writes a line to the FIFO.
            polkit.spawn(["/bin/sh", "-c", "read line < FIFO"]);
            return polkit.Result.YES;
        }
        if (action.lookup("challenge") == "yes") {
            return polkit.Result.AUTH_ADMIN;
        }
        if (action.id == "org.kusu.effector1.manage-address" && action.lookup("address") == "198.18.0.100") {
            return polkit.Result.YES;
        }
        return polkit.Result.NOT_HANDLED;
    });
    """

/// A service on the fixture's bus whose methods ask polkit about their caller,
/// the way the daemons do: Check(s action, s details "k=v;k=v", b interactive)
/// answers nothing when allowed, the mapped error otherwise; Ping() answers at once.
final class PolkitTestService {
    let authority: PolkitAuthority
    /// What happened, in order, on the loop thread.
    var events: [String] = []
    var results: [PolkitResult] = []

    init(_ fixture: PolkitFixture) throws {
        authority = PolkitAuthority(bus: fixture.bus)
        let iface = ExportedInterface(name: "org.kusu.PolkitTest")
        iface.method("Check", in: [.init("action", "s"), .init("details", "s"), .init("interactive", "b")],
                     flags: .unprivileged) { [unowned self] call in
            let action = call.arguments[0].string!
            var details: [String: String] = [:]
            for pair in call.arguments[1].string!.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                details[String(kv[0])] = kv.count > 1 ? String(kv[1]) : ""
            }
            events.append("check started")
            authority.check(action, subject: .busName(call.sender), details: details,
                            interactive: call.arguments[2].bool!) { [unowned self] result in
                events.append("check done")
                results.append(result)
                if let error = PolkitAuthority.error(for: result, action: action) {
                    call.fail(error)
                } else {
                    call.reply()
                }
            }
        }
        iface.method("Ping", out: [.init("answer", "s")], flags: .unprivileged) { [unowned self] call in
            events.append("ping answered")
            call.reply([.string("pong")])
        }
        let object = ExportedObject(path: "/org/kusu/PolkitTest")
        object.add(iface)
        try fixture.bus.export(object)
        try fixture.bus.requestName(PolkitFixture.serviceName)
    }
}

/// Asks polkit about `subject` directly from the test and waits for the answer.
private func checkNow(_ fixture: PolkitFixture, _ authority: PolkitAuthority, _ action: String,
              subject: PolkitSubject, details: [String: String] = [:]) throws -> PolkitResult {
    var result: PolkitResult?
    authority.check(action, subject: subject, details: details) { result = $0 }
    #expect(result == nil, "the reply never runs inside check()")
    try #require(try fixture.wait { result != nil })
    return result!
}

struct PolkitErrorMappingTests {
    @Test func errorForResult() {
        #expect(PolkitAuthority.error(for: .allowed, action: "org.kusu.x") == nil)
        #expect(PolkitAuthority.error(for: .challenge, action: "org.kusu.x")
            == DBusError(name: interactiveRequired, message: "Authentication is required to perform org.kusu.x"))
        #expect(PolkitAuthority.error(for: .denied(reason: "because"), action: "org.kusu.x")
            == DBusError(name: accessDenied, message: "Not authorized to perform org.kusu.x: because"))
    }

    @Test func limitedIsLimitsExceeded() {
        #expect(PolkitAuthority.error(for: .limited(reason: "4 authorization checks of this caller are still pending"), action: "org.kusu.x")
            == DBusError(name: "org.freedesktop.DBus.Error.LimitsExceeded",
                         message: "Not asked for org.kusu.x: 4 authorization checks of this caller are still pending; try again later"))
    }

    /// A flood of calls needing authorization: beyond the pending checks allowed per caller and
    /// in all, the answer is `.limited` at once (polkit is not asked), except for a privileged
    /// caller; the counts go down as answers come (here: no polkitd on the bus, so every asked
    /// check ends "not available", on a later loop iteration).
    @Test(.enabled(if: TestDaemon.available)) func pendingChecksAreBoundedPerCallerAndInAll() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        let authority = PolkitAuthority(bus: f.server)
        #expect(authority.maximumPendingPerSubject == 2 && authority.maximumPending == 8)   // the defaults
        authority.maximumPendingPerSubject = 2
        authority.maximumPending = 3
        var results: [String: [PolkitResult]] = [:]
        func ask(_ name: String, privileged: Bool = false) {
            authority.check("org.kusu.x", subject: .busName(name), privileged: { privileged }) { results[name, default: []].append($0) }
        }
        ask(":1.100"); ask(":1.100"); ask(":1.100")   // the third: over this caller's bound
        ask(":1.200")                                 // the third pending in all
        ask(":1.300")                                 // over the bound in all
        ask(":1.400", privileged: true)               // served anyway
        #expect(authority.pending == 4)
        #expect(try f.wait { results.values.map(\.count).reduce(0, +) == 6 })
        let limited = results.mapValues { $0.filter { if case .limited = $0 { true } else { false } }.count }
        #expect(limited == [":1.100": 1, ":1.200": 0, ":1.300": 1, ":1.400": 0])
        #expect(authority.pending == 0)
        #expect(authority.limitedReport() == 2)
        #expect(authority.limitedReport() == nil)   // once per ten seconds
        // Answered, the bound is free again.
        ask(":1.100"); ask(":1.100")
        #expect(authority.pending == 2)
    }

    @Test func subjectIsSystemBusName() {
        let s = PolkitSubject.busName(":1.42")
        #expect(s.kind == "system-bus-name")
        #expect(s.details == ["name": .string(":1.42")])
    }
}

/// Against a real polkitd (the project's policy and rules) on a private bus.
@Suite(.enabled(if: PolkitFixture.available), .serialized)
final class PolkitTests {
    let fixture: PolkitFixture
    let service: PolkitTestService
    let fifo: String
    /// Our O_RDWR descriptor of the FIFO (-1 until `holdPolkit()`): it keeps a
    /// written line buffered until polkit's helper opens the FIFO to read it.
    var fifoFD: Int32 = -1

    init() throws {
        try PolkitFixture.ensureProjectUsers()
        let fifoPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("kusu-polkit-hold-\(UUID().uuidString.prefix(8))").path
        fixture = try PolkitFixture(extraRules: polkitTestRules.replacingOccurrences(of: "FIFO", with: fifoPath))
        fifo = fifoPath
        service = try PolkitTestService(fixture)
    }

    deinit {
        fixture.stop()
        if fifoFD >= 0 { close(fifoFD) }
        unlink(fifo)
    }

    /// Calls Check as `user` through dbus-send; nil when allowed, else "ErrorName: message".
    func check(as user: String, _ action: String, details: String = "", interactive: Bool = false) throws -> String? {
        try fixture.dbusSend(as: user, "Check", ["string:\(action)", "string:\(details)", "boolean:\(interactive)"])
    }

    @Test func monitorUserMayDriveTheEffectorOnly() throws {
        try fixture.startPolkit()
        for action in kusuActions {
            let error = try check(as: "kusu-ha", action)
            if action.hasPrefix("org.kusu.effector1.") {
                #expect(error == nil, "\(action): \(error ?? "")")
            } else {
                // No session: allow_any "no" applies, a denial and not a challenge.
                #expect(error?.hasPrefix("\(accessDenied): Not authorized to perform \(action): ") == true,
                        "\(action): \(error ?? "allowed")")
            }
        }
        #expect(service.results.contains(.denied(reason: "denied by polkit policy")))
        #expect(!service.results.contains(.challenge))
    }

    @Test func adminGroupMayDoEverything() throws {
        let admin = try TemporaryAdmin()
        defer { admin.remove() }
        try fixture.startPolkit()
        for action in kusuActions {
            let error = try check(as: admin.name, action)
            #expect(error == nil, "\(action): \(error ?? "")")
        }
    }

    @Test func nobodyIsDeniedEveryAction() throws {
        try fixture.startPolkit()
        for action in kusuActions {
            let error = try check(as: "nobody", action)
            #expect(error == "\(accessDenied): Not authorized to perform \(action): denied by polkit policy")
        }
    }

    @Test func rootIsAlwaysAllowed() throws {
        // polkit authorizes uid 0 for every action, before defaults and rules.
        try fixture.startPolkit()
        let root = try BusConnection(address: fixture.address, on: fixture.loop)
        for action in kusuActions {
            #expect(try checkNow(fixture, service.authority, action, subject: .busName(root.uniqueName)) == .allowed)
        }
        let undeclared = try checkNow(fixture, service.authority, "org.kusu.not-declared-anywhere",
                                      subject: .busName(root.uniqueName))
        // ... but only for declared actions.
        #expect(undeclared == .denied(reason: "polkit is not available: org.freedesktop.PolicyKit1.Error.Failed: "
            + "Action org.kusu.not-declared-anywhere is not registered"))
        // Also through the service, as a root client process.
        #expect(try check(as: "root", "org.kusu.heartbeat1.switchover") == nil)
    }

    @Test func undeclaredActionIsDenied() throws {
        try fixture.startPolkit()
        let error = try check(as: "nobody", "org.kusu.effector1.no-such-action")
        #expect(error == "\(accessDenied): Not authorized to perform org.kusu.effector1.no-such-action: "
            + "polkit is not available: org.freedesktop.PolicyKit1.Error.Failed: "
            + "Action org.kusu.effector1.no-such-action is not registered")
    }

    @Test func polkitNotRunningIsDeniedAtOnce() throws {
        // No polkitd on this bus: the bus answers ServiceUnknown at once.
        let start = ContinuousClock.now
        let result = try checkNow(fixture, service.authority, "org.kusu.effector1.takeover",
                                  subject: .busName(fixture.bus.uniqueName))
        #expect(ContinuousClock.now - start < .seconds(2))
        guard case .denied(let reason) = result else {
            Issue.record("expected denied, got \(result)")
            return
        }
        #expect(reason.hasPrefix("polkit is not available: org.freedesktop.DBus.Error.ServiceUnknown"), "\(reason)")
        let error = try check(as: "kusu-ha", "org.kusu.effector1.takeover")
        #expect(error?.hasPrefix("\(accessDenied): Not authorized to perform org.kusu.effector1.takeover: "
            + "polkit is not available: ") == true, "\(error ?? "allowed")")
    }

    @Test func polkitStoppedIsDenied() throws {
        try fixture.startPolkit()
        #expect(try check(as: "kusu-ha", "org.kusu.effector1.takeover") == nil)
        fixture.stopPolkit()
        try #require(try fixture.wait { (try? fixture.hasOwner(PolkitAuthority.busName)) == false })
        let error = try check(as: "kusu-ha", "org.kusu.effector1.takeover")
        #expect(error?.contains("polkit is not available") == true, "\(error ?? "allowed")")
    }

    @Test func detailsArePassedToRules() throws {
        try fixture.startPolkit()
        let action = "org.kusu.effector1.manage-address"
        #expect(try check(as: "nobody", action, details: "address=198.18.0.100") == nil)
        #expect(try check(as: "nobody", action, details: "address=198.18.0.101")?.hasPrefix(accessDenied) == true)
        #expect(try check(as: "nobody", action)?.hasPrefix(accessDenied) == true)
        // The detail only matters for the action the rule names.
        #expect(try check(as: "nobody", "org.kusu.effector1.manage-units", details: "address=198.18.0.100")?
            .hasPrefix(accessDenied) == true)
    }

    @Test func authAdminWithoutInteractionIsAChallenge() throws {
        try fixture.startPolkit()
        let action = "org.kusu.effector1.manage-units"
        #expect(try check(as: "nobody", action, details: "challenge=yes")
            == "\(interactiveRequired): Authentication is required to perform \(action)")
        #expect(service.results == [.challenge])
        // Interaction allowed, but no authentication agent (the subject has no
        // session): polkit 122 still answers is_challenge, at once.
        #expect(try check(as: "nobody", action, details: "challenge=yes", interactive: true)
            == "\(interactiveRequired): Authentication is required to perform \(action)")
        #expect(service.results == [.challenge, .challenge])
    }

    /// While polkitd is held on a FIFO (it cannot answer before the test writes
    /// to it), the same service answers Ping: the check does not block the loop.
    @Test func pendingCheckDoesNotBlockTheLoop() throws {
        try holdPolkit()
        try fixture.startPolkit()
        let held = try fixture.start(as: "nobody", fixture.dbusSendArguments(
            "Check", ["string:org.kusu.effector1.manage-address", "string:hold=yes", "boolean:false"]))
        try #require(try fixture.wait { service.events == ["check started"] })

        let client = try BusConnection(address: fixture.address, on: fixture.loop)
        var pong: String?
        try client.call(destination: PolkitFixture.serviceName, path: "/org/kusu/PolkitTest",
                        interface: "org.kusu.PolkitTest", member: "Ping") { pong = try? $0.get().first?.string }
        try #require(try fixture.wait { pong != nil })
        #expect(pong == "pong")
        #expect(service.events == ["check started", "ping answered"])

        try release()
        let (status, output) = try held.finish(fixture)
        #expect(status == 0, "\(output)")
        #expect(service.events == ["check started", "ping answered", "check done"])
        #expect(service.results == [.allowed])
    }

    @Test func timeoutIsDenied() throws {
        try holdPolkit()
        try fixture.startPolkit()
        service.authority.timeout = .milliseconds(300)
        let start = ContinuousClock.now
        let error = try check(as: "nobody", "org.kusu.effector1.manage-address", details: "hold=yes")
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(error?.hasPrefix("\(accessDenied): Not authorized to perform org.kusu.effector1.manage-address: "
            + "polkit is not available: org.freedesktop.DBus.Error.NoReply") == true, "\(error ?? "allowed")")
        try release()
    }

    /// Creates the FIFO the "hold" rule blocks polkitd on, and opens it
    /// O_RDWR (which never blocks on Linux).
    func holdPolkit() throws {
        try #require(mkfifo(fifo, 0o666) == 0)
        chmod(fifo, 0o666)  // polkitd's helper runs as the user polkitd
        fifoFD = open(fifo, O_RDWR)
        try #require(fifoFD >= 0)
    }

    /// Lets the held polkit.spawn helper finish, whether or not it started yet.
    func release() throws {
        let n = "go\n".withCString { write(fifoFD, $0, 3) }
        try #require(n == 3)
    }

    /// polkit lets only uid 0 or an action's owner (annotation
    /// org.freedesktop.policykit.owner in the .policy file) check subjects of other
    /// users, or pass details at all. kusu-hbd runs as kusu-ha, so the project's
    /// policy makes kusu-ha the owner of the org.kusu.heartbeat1.* actions — and of
    /// nothing else.
    @Test func onlyOwnedActionsCanBeCheckedByTheMonitorsUser() throws {
        try fixture.startPolkit()
        let call = ["/usr/bin/busctl", "--address=\(fixture.address)", "call", "org.freedesktop.PolicyKit1",
                    "/org/freedesktop/PolicyKit1/Authority", "org.freedesktop.PolicyKit1.Authority",
                    "CheckAuthorization", "(sa{sv})sa{ss}us"]
        // Another user's subject (the test's root connection), for an action kusu-ha owns: answered.
        let owned = try fixture.run(as: "kusu-ha", call + [
            "system-bus-name", "1", "name", "s", fixture.bus.uniqueName,
            "org.kusu.heartbeat1.switchover", "1", "reason", "test", "0", "",
        ])
        #expect(owned.status == 0, "\(owned.output)")
        #expect(owned.output.hasPrefix("(bba{ss}) true false"), "\(owned.output)")
        // The same for an action it does not own: refused.
        let other = try fixture.run(as: "kusu-ha", call + [
            "system-bus-name", "1", "name", "s", fixture.bus.uniqueName,
            "org.kusu.effector1.takeover", "0", "0", "",
        ])
        #expect(other.status != 0)
        #expect(other.output.contains("Only trusted callers (e.g. uid 0 or an action owner) can use "
            + "CheckAuthorization() for subjects belonging to other identities"), "\(other.output)")
        // Its own subject, with details.
        let script = "exec \"$0\" \"$@\" unix-process 2 pid u $$ start-time t 0 org.kusu.effector1.takeover "
            + "1 address 198.18.0.100 0 ''"
        let own = try fixture.run(as: "kusu-ha", ["/bin/sh", "-c", script] + call)
        #expect(own.status != 0)
        #expect(own.output.contains("can use CheckAuthorization() and pass details"), "\(own.output)")
    }
}
