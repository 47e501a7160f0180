import DBusKit
@testable import Effector
import Testing

/// A fake org.freedesktop.systemd1 on a private bus: each unit's job behaves as
/// the test says, so the orderings real systemd rarely shows can be forced.
final class FakeSystemd {
    enum Behaviour {
        /// Emit JobRemoved(result) before the StartUnit reply.
        case signalFirst(String)
        /// Reply, then emit JobRemoved(result) a little later.
        case replyFirst(String)
        /// Reply; never finish the job.
        case hang
        case noSuchUnit
    }

    let bus: BusConnection
    var behaviour: [String: Behaviour] = [:]
    var subscribeCalls = 0
    var calls: [String] = []
    private var nextJob: UInt32 = 100
    private var timers: [TimerSource] = []

    init(bus: BusConnection) throws {
        self.bus = bus
        let object = ExportedObject(path: "/org/freedesktop/systemd1")
        let manager = ExportedInterface(name: "org.freedesktop.systemd1.Manager")
        manager.method("Subscribe") { [unowned self] call in
            self.subscribeCalls += 1
            call.reply()
        }
        for member in ["StartUnit", "StopUnit"] {
            manager.method(member, in: [.init("name", "s"), .init("mode", "s")], out: [.init("job", "o")]) {
                [unowned self] call in self.job(call)
            }
        }
        manager.signal("JobRemoved", [.init("id", "u"), .init("job", "o"), .init("unit", "s"), .init("result", "s")])
        object.add(manager)
        try bus.export(object)
        try bus.requestName("org.freedesktop.systemd1")
    }

    private func removed(_ id: UInt32, _ unit: String, _ result: String) {
        try? bus.emitSignal(path: "/org/freedesktop/systemd1", interface: "org.freedesktop.systemd1.Manager",
                            member: "JobRemoved",
                            [.uint32(id), .objectPath(Self.path(id)), .string(unit), .string(result)])
    }

    static func path(_ id: UInt32) -> ObjectPath { try! ObjectPath("/org/freedesktop/systemd1/job/\(id)") }

    private func job(_ call: MethodInvocation) {
        let unit = call.arguments.first?.string ?? ""
        calls.append("\(call.member) \(unit)")
        nextJob += 1
        let id = nextJob
        // Someone else's job on the same unit finishing first must not be taken for ours.
        removed(id + 1000, unit, "canceled")
        switch behaviour[unit] ?? .replyFirst("done") {
        case .noSuchUnit:
            call.fail(DBusError(name: "org.freedesktop.systemd1.NoSuchUnit", message: "Unit \(unit) not found."))
        case .signalFirst(let result):
            removed(id, unit, result)
            call.reply([.objectPath(Self.path(id))])
        case .replyFirst(let result):
            call.reply([.objectPath(Self.path(id))])
            if let t = try? bus.loop.addTimer(at: bus.loop.now + .milliseconds(20), { [unowned self] in
                self.removed(id, unit, result)
            }) { timers.append(t) }
        case .hang:
            call.reply([.objectPath(Self.path(id))])
        }
    }
}

@Suite(.enabled(if: TestDaemon.available), .serialized)
struct UnitManagerTests {
    let fixture: BusFixture
    let systemd: FakeSystemd
    let manager: UnitManager

    init() throws {
        fixture = try BusFixture()
        systemd = try FakeSystemd(bus: fixture.server)
        manager = UnitManager(bus: fixture.client)
    }

    func run(_ body: (@escaping (Result<Void, UnitError>) -> Void) -> Void) throws -> Result<Void, UnitError> {
        var result: Result<Void, UnitError>?
        var count = 0
        body { result = $0; count += 1 }
        try #require(try fixture.wait { result != nil })
        // Completion runs exactly once, even when the job's signal comes later.
        _ = try fixture.loop.run(until: fixture.loop.now + .milliseconds(50)) { false }
        #expect(count == 1)
        return result!
    }

    @Test func jobRemovedBeforeReplyIsNotLost() throws {
        systemd.behaviour["a.service"] = .signalFirst("done")
        systemd.behaviour["b.service"] = .signalFirst("failed")
        let a = try run { manager.start("a.service", timeout: .seconds(2), completion: $0) }
        #expect(throws: Never.self) { try a.get() }
        let b = try run { manager.start("b.service", timeout: .seconds(2), completion: $0) }
        #expect(throws: UnitError(code: .jobFailed, unit: "b.service", result: "failed",
                                  message: "start of b.service failed: job result 'failed'")) { try b.get() }
    }

    @Test func resultAfterReplyAndOtherJobsIgnored() throws {
        systemd.behaviour["c.service"] = .replyFirst("dependency")
        let r = try run { manager.stop("c.service", timeout: .seconds(2), completion: $0) }
        guard case .failure(let e) = r else { Issue.record("expected failure"); return }
        #expect(e.code == .jobFailed && e.result == "dependency" && e.unit == "c.service")
        #expect(systemd.calls == ["StopUnit c.service"])
    }

    @Test func subscribesOnceAcrossOperations() throws {
        for _ in 0..<3 {
            let r = try run { manager.start("d.service", timeout: .seconds(2), completion: $0) }
            #expect(throws: Never.self) { try r.get() }
        }
        #expect(systemd.subscribeCalls == 1)
    }

    @Test func noSuchUnitAndTimeout() throws {
        systemd.behaviour["nope.service"] = .noSuchUnit
        systemd.behaviour["hang.service"] = .hang
        let n = try run { manager.start("nope.service", timeout: .seconds(2), completion: $0) }
        guard case .failure(let ne) = n else { Issue.record("expected failure"); return }
        #expect(ne.code == .noSuchUnit && ne.unit == "nope.service")
        let t0 = fixture.loop.now
        let h = try run { manager.start("hang.service", timeout: .milliseconds(200), completion: $0) }
        guard case .failure(let he) = h else { Issue.record("expected failure"); return }
        #expect(he.code == .timeout)
        #expect(fixture.loop.now - t0 < .seconds(1))
    }

    @Test func sequenceStopsAtFirstFailureAndConcurrentJobs() throws {
        systemd.behaviour["2.service"] = .signalFirst("failed")
        let r = try run { manager.start(["1.service", "2.service", "3.service"], timeout: .seconds(2), completion: $0) }
        guard case .failure(let e) = r else { Issue.record("expected failure"); return }
        #expect(e.unit == "2.service")
        #expect(systemd.calls == ["StartUnit 1.service", "StartUnit 2.service"])

        // Several jobs in flight at once, finishing in both orders.
        systemd.behaviour["x.service"] = .replyFirst("done")
        systemd.behaviour["y.service"] = .signalFirst("timeout")
        var results: [String: Result<Void, UnitError>] = [:]
        for unit in ["x.service", "y.service", "2.service"] {
            manager.start(unit, timeout: .seconds(2)) { results[unit] = $0 }
        }
        try #require(try fixture.wait { results.count == 3 })
        #expect(throws: Never.self) { try results["x.service"]!.get() }
        if case .failure(let e) = results["y.service"]! { #expect(e.result == "timeout") } else { Issue.record("y") }
        if case .failure(let e) = results["2.service"]! { #expect(e.result == "failed") } else { Issue.record("2") }
    }
}

@Test func unitObjectPathsFollowSystemdEscaping() {
    // Checked against systemd 252: busctl tree org.freedesktop.systemd1.
    #expect(UnitManager.unitObjectPath("dbus.service") == "/org/freedesktop/systemd1/unit/dbus_2eservice")
    #expect(UnitManager.unitObjectPath("postgresql@15-main.service")
        == "/org/freedesktop/systemd1/unit/postgresql_4015_2dmain_2eservice")
    #expect(UnitManager.unitObjectPath("1x.target") == "/org/freedesktop/systemd1/unit/_31x_2etarget")
}
