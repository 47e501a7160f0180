import DBusKit
import Foundation
import Testing

let testPath: ObjectPath = "/org/kusu/Test"
let testInterface: InterfaceName = "org.kusu.Test"

let sampleItems: Value = .array(element: "(ssbt)", [
    .structure([.string("a"), .string("alpha"), .boolean(true), .uint64(1)]),
    .structure([.string("b"), .string("beta"), .boolean(false), .uint64(UInt64.max)]),
])
let sampleAttrs: Value = .vardict(["uptime": .uint64(42), "role": .string("primary"), "ok": .boolean(true)])

/// Mutable state behind the test service (single-threaded: the loop thread).
final class ServiceState {
    var name = "first"
    var count: UInt32 = 1
    var held: [MethodInvocation] = []
    var timers: [TimerSource] = []
}

/// Exports the test object on `fixture.server` and returns its state.
func exportTestService(_ fixture: BusFixture) throws -> ServiceState {
    let state = ServiceState()
    let loop = fixture.loop
    let iface = ExportedInterface(name: testInterface)
    iface.method("Add", in: [.init("a", "i"), .init("b", "i")], out: [.init("sum", "i")], flags: .unprivileged) { call in
        call.reply([.int32(call.arguments[0].int32! &+ call.arguments[1].int32!)])
    }
    iface.method("Echo", in: [.init("value", "v")], out: [.init("value", "v")]) { call in
        call.reply(call.arguments)
    }
    iface.method("Later", in: [.init("delayMs", "u")], out: [.init("answer", "s")]) { call in
        let ms = call.arguments[0].uint32!
        let timer = try? loop.addTimer(at: loop.now + .milliseconds(Int(ms))) {
            call.reply([.string("later")])
        }
        if let timer { state.timers.append(timer) }
    }
    iface.method("Fail", in: [.init("name", "s"), .init("message", "s")]) { call in
        call.fail(DBusError(name: call.arguments[0].string!, message: call.arguments[1].string!))
    }
    iface.method("WrongReply", out: [.init("n", "u")]) { call in
        call.reply([.string("not a uint32")])
    }
    iface.method("Hold") { call in state.held.append(call) }
    iface.method("Drop") { _ in }
    iface.property("Name", "s") { .string(state.name) }
    iface.property("Count", "u") { .uint32(state.count) }
    iface.property("Items", "a(ssbt)", change: .const) { sampleItems }
    iface.property("Attrs", "a{sv}") { sampleAttrs }
    iface.property("Pair", "(is)", change: .emitsInvalidation) { .structure([.int32(-7), .string("seven")]) }
    iface.property("Anything", "v", change: .none) { .variant(.array(element: "i", [.int32(1), .int32(2)])) }
    iface.signal("Changed", [.init("name", "s"), .init("count", "u")])
    let object = ExportedObject(path: testPath)
    object.add(iface)
    try fixture.server.export(object)
    return state
}

@Suite(.enabled(if: TestDaemon.available))
struct BusTests {
    @Test func connectAndUniqueName() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        #expect(f.server.uniqueName.hasPrefix(":"))
        #expect(f.client.uniqueName.hasPrefix(":"))
        #expect(f.server.uniqueName != f.client.uniqueName)
        #expect(BusName.isValid(f.server.uniqueName))
    }

    @Test func requestNameAndSecondOwnerFails() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        try f.server.requestName("org.kusu.TestName")
        try f.server.requestName("org.kusu.TestName")  // already ours: fine
        #expect(throws: DBusError.self) { try f.client.requestName("org.kusu.TestName") }
        do {
            try f.client.requestName("org.kusu.TestName")
        } catch {
            #expect(error.name == "org.freedesktop.DBus.Error.FileExists")
        }
        let owner = try f.client.callSync(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                          interface: "org.freedesktop.DBus", member: "GetNameOwner",
                                          [.string("org.kusu.TestName")], timeout: .seconds(5))
        #expect(owner == [.string(f.server.uniqueName)])
    }

    @Test func requestNameRefusedByPolicyIsAccessDenied() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        #expect(throws: DBusError.self) { try f.server.requestName("org.kusu.Forbidden") }
        do {
            try f.server.requestName("org.kusu.Forbidden")
        } catch {
            #expect(error.name == "org.freedesktop.DBus.Error.AccessDenied")
        }
    }

    @Test func callSyncErrorCarriesName() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        #expect(throws: DBusError.self) {
            _ = try f.client.callSync(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                      interface: "org.freedesktop.DBus", member: "GetNameOwner",
                                      [.string("org.kusu.Nobody")], timeout: .seconds(5))
        }
        do {
            _ = try f.client.callSync(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                      interface: "org.freedesktop.DBus", member: "GetNameOwner",
                                      [.string("org.kusu.Nobody")], timeout: .seconds(5))
        } catch {
            #expect(error.name == "org.freedesktop.DBus.Error.NameHasNoOwner")
        }
    }

    @Test func methodsWithArgumentsAsyncRepliesAndErrors() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        _ = try exportTestService(f)
        let dest = try BusName(f.server.uniqueName)

        #expect(try f.call(dest, testPath, testInterface, "Add", [.int32(2), .int32(3)]).get() == [.int32(5)])

        let start = f.loop.now
        #expect(try f.call(dest, testPath, testInterface, "Later", [.uint32(50)]).get() == [.string("later")])
        #expect(f.loop.now - start >= .milliseconds(50))

        let failure = try f.call(dest, testPath, testInterface, "Fail",
                             [.string("org.kusu.Error.Fenced"), .string("node b is fenced")])
        #expect(throws: DBusError(name: "org.kusu.Error.Fenced", message: "node b is fenced")) { try failure.get() }

        // An invalid error name is replaced by Failed rather than breaking the connection.
        let bad = try f.call(dest, testPath, testInterface, "Fail", [.string("not an error name"), .string("m")])
        #expect(throws: DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "m")) { try bad.get() }

        let wrong = try f.call(dest, testPath, testInterface, "WrongReply")
        #expect(throws: DBusError.self) { try wrong.get() }
        if case .failure(let e) = wrong { #expect(e.name == "org.freedesktop.DBus.Error.Failed") }

        let dropped = try f.call(dest, testPath, testInterface, "Drop")
        #expect(throws: DBusError.failed("no reply was produced")) { try dropped.get() }
    }

    @Test func callTimeoutIsNoReply() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        let state = try exportTestService(f)
        let result = try f.call(BusName(f.server.uniqueName), testPath, testInterface, "Hold", timeout: .milliseconds(100))
        if case .failure(let e) = result {
            #expect(e.name == "org.freedesktop.DBus.Error.NoReply")
        } else {
            Issue.record("expected a timeout, got \(result)")
        }
        #expect(state.held.count == 1)
        state.held.removeAll()  // answered now with Failed; the caller gave up already
    }

    @Test func pendingCallCancel() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        let state = try exportTestService(f)
        var got = false
        let pending = try f.client.call(destination: BusName(f.server.uniqueName), path: testPath,
                                        interface: testInterface, member: "Hold") { _ in got = true }
        #expect(try f.wait { state.held.count == 1 })
        pending.cancel()
        pending.cancel()
        state.held.removeAll()  // the server now answers
        // A later call's reply arrives after the cancelled one's would have.
        #expect(try f.call(BusName(f.server.uniqueName), testPath, testInterface, "Add", [.int32(1), .int32(1)]).get()
                == [.int32(2)])
        #expect(!got)
    }

    @Test func propertiesGetAndGetAll() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        _ = try exportTestService(f)
        let dest = try BusName(f.server.uniqueName)

        var name: Result<Value, DBusError>?
        try f.client.getProperty(destination: dest, path: testPath, interface: testInterface, name: "Name") { name = $0 }
        try #require(try f.wait { name != nil })
        #expect(try name!.get() == .string("first"))

        var all: Result<[String: Value], DBusError>?
        try f.client.getAllProperties(destination: dest, path: testPath, interface: testInterface) { all = $0 }
        try #require(try f.wait { all != nil })
        let props = try all!.get()
        #expect(props["Name"] == .string("first"))
        #expect(props["Count"] == .uint32(1))
        #expect(props["Items"] == sampleItems)
        #expect(props["Attrs"] == sampleAttrs)
        #expect(props["Pair"] == .structure([.int32(-7), .string("seven")]))
        #expect(props["Anything"] == .variant(.array(element: "i", [.int32(1), .int32(2)])))
        #expect(props["Attrs"]?.stringKeyedDictionary?["uptime"] == .variant(.uint64(42)))

        // Raw Get via the generic call path: the reply is one variant.
        let raw = try f.call(dest, testPath, "org.freedesktop.DBus.Properties", "Get",
                             [.string(testInterface.rawValue), .string("Items")]).get()
        #expect(raw == [.variant(sampleItems)])
    }

    @Test func propertiesChangedViaMatch() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        let state = try exportTestService(f)
        let dest = try BusName(f.server.uniqueName)
        var received: [SignalMessage] = []
        let subscription = try f.client.addMatch(
            "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='\(testPath)'"
        ) { received.append($0) }
        // A round trip after AddMatch: the daemon has installed the match.
        _ = try f.call(dest, testPath, testInterface, "Add", [.int32(0), .int32(0)]).get()

        state.name = "second"
        state.count = 7
        try f.server.emitPropertiesChanged(path: testPath, interface: testInterface, ["Name", "Count", "Pair"])
        try #require(try f.wait { !received.isEmpty })
        let signal = received[0]
        #expect(signal.sender == f.server.uniqueName)
        #expect(signal.path == testPath.rawValue)
        #expect(signal.member == "PropertiesChanged")
        #expect(signal.arguments.count == 3)
        #expect(signal.arguments[0] == .string(testInterface.rawValue))
        let changed = signal.arguments[1].stringKeyedDictionary
        #expect(changed?["Name"] == .variant(.string("second")))
        #expect(changed?["Count"] == .variant(.uint32(7)))
        #expect(changed?["Pair"] == nil)
        #expect(signal.arguments[2] == .strings(["Pair"]))  // emitsInvalidation

        subscription.cancel()
        received.removeAll()
        try f.server.emitPropertiesChanged(path: testPath, interface: testInterface, ["Name"])
        _ = try f.call(dest, testPath, testInterface, "Add", [.int32(0), .int32(0)]).get()
        #expect(received.isEmpty)
    }

    @Test func customSignalViaMatch() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        var received: [SignalMessage] = []
        let subscription = try f.client.addMatch("type='signal',interface='org.kusu.Test',member='Changed'") {
            received.append($0)
        }
        _ = try f.client.callSync(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                  interface: "org.freedesktop.DBus", member: "GetId", [], timeout: .seconds(5))
        let args: [Value] = [.string("node-a"), .uint32(3), sampleAttrs]
        try f.server.emitSignal(path: testPath, interface: testInterface, member: "Changed", args)
        try #require(try f.wait { !received.isEmpty })
        #expect(received[0].arguments == args)
        #expect(received[0].interface == "org.kusu.Test")
        #expect(received[0].sender == f.server.uniqueName)
        _ = subscription
    }

    @Test func introspectionShowsNamesAndProperties() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        _ = try exportTestService(f)
        let xml = try f.call(BusName(f.server.uniqueName), testPath, "org.freedesktop.DBus.Introspectable",
                             "Introspect").get().first?.string ?? ""
        #expect(xml.contains(#"<interface name="org.kusu.Test">"#))
        #expect(xml.contains(#"<method name="Add">"#))
        #expect(xml.contains(#"<arg type="i" name="a" direction="in"/>"#))
        #expect(xml.contains(#"<arg type="i" name="sum" direction="out"/>"#))
        #expect(xml.contains(#"<property name="Items" type="a(ssbt)" access="read">"#))
        #expect(xml.contains(#"<property name="Name" type="s" access="read">"#))
        #expect(xml.contains(#"<signal name="Changed">"#))
        #expect(xml.contains(#"<arg type="u" name="count"/>"#))
        #expect(xml.contains("org.freedesktop.DBus.Properties"))
    }

    @Test func malformedCallsAnsweredBySdBus() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        _ = try exportTestService(f)
        let dest = try BusName(f.server.uniqueName)
        func errorName(_ r: Result<[Value], DBusError>) -> String? {
            if case .failure(let e) = r { e.name } else { nil }
        }
        #expect(errorName(try f.call(dest, testPath, testInterface, "Add", [.string("x")]))
                == "org.freedesktop.DBus.Error.InvalidArgs")
        #expect(errorName(try f.call(dest, testPath, testInterface, "Nope"))
                == "org.freedesktop.DBus.Error.UnknownMethod")
        #expect(errorName(try f.call(dest, testPath, "org.freedesktop.DBus.Properties", "Get",
                                     [.string(testInterface.rawValue), .string("Nope")]))
                == "org.freedesktop.DBus.Error.UnknownProperty")
        #expect(errorName(try f.call(dest, "/org/kusu/Elsewhere", testInterface, "Add", [.int32(1), .int32(1)]))
                == "org.freedesktop.DBus.Error.UnknownObject")
    }

    @Test func unexportRemovesObject() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        _ = try exportTestService(f)
        let dest = try BusName(f.server.uniqueName)
        #expect(try f.call(dest, testPath, testInterface, "Add", [.int32(1), .int32(1)]).get() == [.int32(2)])
        f.server.unexport(testPath)
        #expect(throws: DBusError.self) { try f.call(dest, testPath, testInterface, "Add", [.int32(1), .int32(1)]).get() }
    }

    static let roundTripValues: [Value] = [
        .byte(0), .byte(255), .boolean(true), .boolean(false),
        .int16(.min), .uint16(.max), .int32(.min), .uint32(.max), .int64(.min), .uint64(.max),
        .double(-0.5), .double(.greatestFiniteMagnitude),
        .string(""), .string("héllo ✓"), .objectPath("/"), .objectPath("/a/b_c/D1"),
        .signature(""), .signature("a{sv}(ii)"),
        .array(element: "s", []), .strings(["x", "y"]),
        .array(element: "ai", [.array(element: "i", [.int32(1)]), .array(element: "i", [])]),
        sampleItems, sampleAttrs,
        .dictionary(key: "u", value: "a(sv)", [
            DictEntry(key: .uint32(1), value: .array(element: "(sv)", [.structure([.string("k"), .variant(.byte(1))])])),
        ]),
        .dictionary(key: "o", value: "s", []),
        .structure([.int32(1), .structure([.string("nested"), .variant(.variant(.boolean(true)))])]),
        .variant(.uint16(9)),
        .array(element: "v", [.variant(.string("a")), .variant(.int64(-1))]),
        .array(element: "a{sv}", [sampleAttrs, .vardict([:])]),
    ]

    @Test func everyValueRoundTripsThroughEcho() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        _ = try exportTestService(f)
        let dest = try BusName(f.server.uniqueName)
        for value in Self.roundTripValues {
            let result = try f.call(dest, testPath, testInterface, "Echo", [.variant(value)]).get()
            #expect(result == [.variant(value)], "\(value)")
        }
    }

    @Test func mismatchedContainerContentThrows() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        let bad: [Value] = [
            .array(element: "s", [.string("ok"), .int32(1)]),
            .array(element: "ss", [.string("a")]),
            .array(element: "", []),
            .dictionary(key: "s", value: "v", [DictEntry(key: .string("k"), value: .string("not a variant"))]),
            .dictionary(key: "v", value: "s", []),
            .dictionary(key: "s", value: "s", [DictEntry(key: .int32(1), value: .string("x"))]),
            .structure([]),
            .variant(.structure([])),
            .array(element: "(is)", [.structure([.string("swapped"), .int32(1)])]),
            .string("nul\0inside"),
        ]
        for value in bad {
            var called = false
            #expect(throws: DBusError.self, "\(value)") {
                try f.client.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                  interface: "org.freedesktop.DBus", member: "GetId", [value]) { _ in called = true }
            }
            #expect(throws: DBusError.self, "\(value)") {
                try f.server.emitSignal(path: testPath, interface: testInterface, member: "Changed", [value])
            }
            #expect(!called)
        }
        // The connection is still usable.
        #expect(try f.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId").get().count == 1)
    }

    @Test func propertyGetterWithWrongTypeFails() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        let iface = ExportedInterface(name: "org.kusu.Bad")
        iface.property("Broken", "u") { .string("oops") }
        let object = ExportedObject(path: "/bad")
        object.add(iface)
        try f.server.export(object)
        let r = try f.call(BusName(f.server.uniqueName), "/bad", "org.freedesktop.DBus.Properties", "Get",
                           [.string("org.kusu.Bad"), .string("Broken")])
        #expect(throws: DBusError.self) { try r.get() }
    }

    @Test func exportRejectsInvalidDeclarations() throws {
        let f = try BusFixture()
        defer { f.daemon.stop() }
        let iface = ExportedInterface(name: "org.kusu.Bad")
        iface.method("has-hyphen") { $0.reply() }
        let object = ExportedObject(path: "/bad")
        object.add(iface)
        #expect(throws: DBusError.self) { try f.server.export(object) }
    }
}
