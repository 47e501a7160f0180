import CSystemd
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A received signal (or any message delivered to a match).
public struct SignalMessage: Sendable {
    public let sender: String?
    public let path: String
    public let interface: String
    public let member: String
    public let arguments: [Value]
}

/// A connection to a message bus, attached to an `EventLoop`. Confined to the
/// loop's thread, like the loop; all callbacks run there.
public final class BusConnection {
    let bus: OpaquePointer
    /// The loop this connection is attached to (kept alive by the connection).
    public let loop: EventLoop
    /// Slots of exported vtables, by object path. We own one ref on each.
    private var exported: [ObjectPath: [OpaquePointer]] = [:]

    private init(bus: OpaquePointer, loop: EventLoop) throws(DBusError) {
        self.bus = bus
        self.loop = loop
        let r = sd_bus_attach_event(bus, loop.event, Int32(SD_EVENT_PRIORITY_NORMAL))
        if r < 0 {
            sd_bus_flush_close_unref(bus)
            throw busError("sd_bus_attach_event", r)
        }
    }

    /// Connects to the system bus (honours DBUS_SYSTEM_BUS_ADDRESS).
    public static func system(on loop: EventLoop) throws(DBusError) -> BusConnection {
        var b: OpaquePointer?
        let r = sd_bus_open_system(&b)
        guard r >= 0, let b else { throw busError("sd_bus_open_system", r) }
        return try BusConnection(bus: b, loop: loop)
    }

    /// Connects to the bus at `address` (e.g. "unix:path=/run/x/bus") as a bus client.
    public convenience init(address: String, on loop: EventLoop) throws(DBusError) {
        var b: OpaquePointer?
        var r = sd_bus_new(&b)
        guard r >= 0, let b else { throw busError("sd_bus_new", r) }
        r = sd_bus_set_address(b, address)
        if r >= 0 { r = sd_bus_set_bus_client(b, 1) }
        if r < 0 {
            sd_bus_unref(b)
            throw busError("sd_bus_set_address", r)
        }
        r = sd_bus_start(b)
        if r < 0 {
            sd_bus_unref(b)
            throw busError("sd_bus_start", r)
        }
        try self.init(bus: b, loop: loop)
    }

    deinit {
        for slots in exported.values {
            for slot in slots { sd_bus_slot_unref(slot) }
        }
        // Pending asynchronous calls are dropped without invoking their reply handler.
        sd_bus_flush_close_unref(bus)
    }

    /// This connection's unique name (":1.42"). Waits for the Hello reply if needed.
    public var uniqueName: String {
        var p: UnsafePointer<CChar>?
        guard sd_bus_get_unique_name(bus, &p) >= 0, let p else { return "" }
        return String(cString: p)
    }

    /// Whether the event loop exits when this connection is lost (default false).
    public var exitLoopOnDisconnect: Bool {
        get { sd_bus_get_exit_on_disconnect(bus) > 0 }
        set { _ = sd_bus_set_exit_on_disconnect(bus, newValue ? 1 : 0) }
    }

    /// Requests ownership of `name` (flags 0: no queueing, no replacement).
    /// Synchronous: use at start-up only. Already owning the name is not an error.
    /// Owned by another connection → org.freedesktop.DBus.Error.FileExists (EEXIST);
    /// refused by bus policy → org.freedesktop.DBus.Error.AccessDenied.
    public func requestName(_ name: BusName) throws(DBusError) {
        let r = sd_bus_request_name(bus, name.rawValue, 0)
        if r == -EALREADY { return }
        if r == -EEXIST {
            throw DBusError(name: "org.freedesktop.DBus.Error.FileExists",
                            message: "name \(name) is owned by another connection")
        }
        try check("sd_bus_request_name(\(name))", r)
    }

    /// Releases a name previously acquired. Synchronous.
    public func releaseName(_ name: BusName) throws(DBusError) {
        try check("sd_bus_release_name(\(name))", sd_bus_release_name(bus, name.rawValue))
    }

    // MARK: Exporting objects

    /// Exports every interface of `object` (one sd-bus vtable each) until
    /// `unexport(_:)` or the connection is deinitialised.
    public func export(_ object: ExportedObject) throws(DBusError) {
        var slots: [OpaquePointer] = []
        for interface in object.interfaces {
            do {
                slots.append(try exportInterface(interface, at: object.path))
            } catch {
                for s in slots { sd_bus_slot_unref(s) }
                throw error
            }
        }
        exported[object.path, default: []].append(contentsOf: slots)
    }

    /// Removes every interface exported at `path`.
    public func unexport(_ path: ObjectPath) {
        for slot in exported.removeValue(forKey: path) ?? [] { sd_bus_slot_unref(slot) }
    }

    private func exportInterface(_ interface: ExportedInterface, at path: ObjectPath) throws(DBusError) -> OpaquePointer {
        let registration = try VTableRegistration(interface)
        // The C side owns one retain of the registration (vtable memory + closures),
        // released by the slot's destroy callback: the vtable lives exactly as long
        // as the slot.
        let userdata = Unmanaged.passRetained(registration)
        var slot: OpaquePointer?
        let r = sd_bus_add_object_vtable(bus, &slot, path.rawValue, interface.name.rawValue,
                                         registration.vtable, userdata.toOpaque())
        guard r >= 0, let slot else {
            userdata.release()
            throw busError("sd_bus_add_object_vtable(\(path), \(interface.name))", r)
        }
        _ = sd_bus_slot_set_destroy_callback(slot) { p in
            if let p { Unmanaged<VTableRegistration>.fromOpaque(p).release() }
        }
        return slot
    }

    // MARK: Signals

    public func emitSignal(path: ObjectPath, interface: InterfaceName, member: MemberName,
                           _ arguments: [Value]) throws(DBusError) {
        var m: OpaquePointer?
        try check("sd_bus_message_new_signal",
                  sd_bus_message_new_signal(bus, &m, path.rawValue, interface.rawValue, member.rawValue))
        guard let m else { throw .failed("sd_bus_message_new_signal returned no message") }
        defer { sd_bus_message_unref(m) }
        try Marshal.append(arguments, to: m)
        try check("sd_bus_send", sd_bus_send(bus, m, nil))
    }

    /// Emits org.freedesktop.DBus.Properties.PropertiesChanged for `properties` of an
    /// exported interface; sd-bus reads the current values through the getters
    /// (or lists them as invalidated, per each property's `PropertyChange`).
    public func emitPropertiesChanged(path: ObjectPath, interface: InterfaceName,
                                      _ properties: [String]) throws(DBusError) {
        if properties.isEmpty { return }
        var names: [UnsafeMutablePointer<CChar>?] = properties.map { strdup($0) }
        names.append(nil)
        defer { for p in names { free(p) } }
        let r = names.withUnsafeMutableBufferPointer {
            sd_bus_emit_properties_changed_strv(bus, path.rawValue, interface.rawValue, $0.baseAddress)
        }
        try check("sd_bus_emit_properties_changed(\(path), \(interface))", r)
    }

    // MARK: Calls

    private func newCall(_ destination: BusName, _ path: ObjectPath, _ interface: InterfaceName,
                         _ member: MemberName, _ arguments: [Value]) throws(DBusError) -> OpaquePointer {
        var m: OpaquePointer?
        try check("sd_bus_message_new_method_call",
                  sd_bus_message_new_method_call(bus, &m, destination.rawValue, path.rawValue,
                                                 interface.rawValue, member.rawValue))
        guard let m else { throw .failed("sd_bus_message_new_method_call returned no message") }
        do {
            try Marshal.append(arguments, to: m)
        } catch {
            sd_bus_message_unref(m)
            throw error
        }
        return m
    }

    /// Calls a method asynchronously; `reply` runs on the loop thread with the
    /// reply's values or its error (a timeout is org.freedesktop.DBus.Error.NoReply).
    /// The call stays pending even if the returned `PendingCall` is discarded.
    @discardableResult
    public func call(destination: BusName, path: ObjectPath, interface: InterfaceName, member: MemberName,
                     _ arguments: [Value] = [], timeout: Duration = .seconds(25), interactive: Bool = false,
                     reply: @escaping (Result<[Value], DBusError>) -> Void) throws(DBusError) -> PendingCall {
        let m = try newCall(destination, path, interface, member, arguments)
        defer { sd_bus_message_unref(m) }
        if interactive {
            try check("sd_bus_message_set_allow_interactive_authorization",
                      sd_bus_message_set_allow_interactive_authorization(m, 1))
        }
        let box = Unmanaged.passRetained(ReplyBox(reply))
        var slot: OpaquePointer?
        let r = sd_bus_call_async(bus, &slot, m, { m, userdata, _ in
            guard let m, let userdata else { return 0 }
            let box = Unmanaged<ReplyBox>.fromOpaque(userdata).takeUnretainedValue()
            box.deliver(m)
            return 1
        }, box.toOpaque(), Microseconds.from(timeout))
        guard r >= 0, let slot else {
            box.release()
            throw busError("sd_bus_call_async(\(destination) \(interface).\(member))", r)
        }
        _ = sd_bus_slot_set_destroy_callback(slot) { p in
            if let p { Unmanaged<ReplyBox>.fromOpaque(p).release() }
        }
        // Floating: the bus keeps the slot until the reply arrives; PendingCall
        // keeps its own ref only so that it can cancel.
        _ = sd_bus_slot_set_floating(slot, 1)
        return PendingCall(slot)
    }

    /// Calls a method and waits for the reply, blocking the thread (other events
    /// of the loop are not processed meanwhile). For CLIs and tests only.
    /// `interactive`: set ALLOW_INTERACTIVE_AUTHORIZATION on the call, so that the
    /// service may have polkit ask the caller's authentication agent (as systemctl does).
    public func callSync(destination: BusName, path: ObjectPath, interface: InterfaceName, member: MemberName,
                         _ arguments: [Value] = [], timeout: Duration = .seconds(25),
                         interactive: Bool = false) throws(DBusError) -> [Value] {
        let m = try newCall(destination, path, interface, member, arguments)
        defer { sd_bus_message_unref(m) }
        if interactive {
            try check("sd_bus_message_set_allow_interactive_authorization",
                      sd_bus_message_set_allow_interactive_authorization(m, 1))
        }
        var error = sd_bus_error()
        defer { sd_bus_error_free(&error) }
        var reply: OpaquePointer?
        let r = sd_bus_call(bus, m, Microseconds.from(timeout), &error, &reply)
        if r < 0 {
            if sd_bus_error_is_set(&error) != 0, let name = error.name {
                throw DBusError(name: String(cString: name), message: error.message.map { String(cString: $0) } ?? "")
            }
            throw busError("sd_bus_call(\(destination) \(interface).\(member))", r)
        }
        guard let reply else { return [] }
        defer { sd_bus_message_unref(reply) }
        return try Marshal.readAll(reply)
    }

    /// Reads a property with org.freedesktop.DBus.Properties.Get (async); the
    /// result is the property value with the variant unwrapped.
    @discardableResult
    public func getProperty(destination: BusName, path: ObjectPath, interface: InterfaceName, name: String,
                            timeout: Duration = .seconds(25),
                            reply: @escaping (Result<Value, DBusError>) -> Void) throws(DBusError) -> PendingCall {
        try call(destination: destination, path: path, interface: "org.freedesktop.DBus.Properties", member: "Get",
                 [.string(interface.rawValue), .string(name)], timeout: timeout) { result in
            reply(result.flatMap { values in
                if let v = values.first?.variant { return .success(v) }
                return .failure(.invalidArgs("Properties.Get reply is not a variant"))
            })
        }
    }

    /// Reads all properties of an interface with org.freedesktop.DBus.Properties.GetAll (async).
    @discardableResult
    public func getAllProperties(destination: BusName, path: ObjectPath, interface: InterfaceName,
                                 timeout: Duration = .seconds(25),
                                 reply: @escaping (Result<[String: Value], DBusError>) -> Void) throws(DBusError) -> PendingCall {
        try call(destination: destination, path: path, interface: "org.freedesktop.DBus.Properties", member: "GetAll",
                 [.string(interface.rawValue)], timeout: timeout) { result in
            reply(result.flatMap { values in
                guard let dict = values.first?.stringKeyedDictionary else {
                    return .failure(.invalidArgs("Properties.GetAll reply is not a{sv}"))
                }
                return .success(dict.mapValues { $0.variant ?? $0 })
            })
        }
    }

    // MARK: Matches

    /// Subscribes to messages matching `rule` (D-Bus match rule syntax, e.g.
    /// "type='signal',interface='org.example.I',member='Changed'"). The match is
    /// installed on the bus asynchronously (messages sent before the daemon
    /// processed AddMatch are not seen; a failure to install is ignored).
    /// The subscription lasts while the returned object is alive and not cancelled.
    public func addMatch(_ rule: String, _ handler: @escaping (SignalMessage) -> Void) throws(DBusError) -> Subscription {
        let box = Unmanaged.passRetained(MatchBox(handler))
        var slot: OpaquePointer?
        let r = sd_bus_add_match_async(bus, &slot, rule, { m, userdata, _ in
            guard let m, let userdata else { return 0 }
            Unmanaged<MatchBox>.fromOpaque(userdata).takeUnretainedValue().deliver(m)
            return 0
        }, { _, _, _ in
            // Our own install callback, so that a refused AddMatch does not make
            // sd-bus close the connection (its behaviour with a NULL callback).
            0
        }, box.toOpaque())
        guard r >= 0, let slot else {
            box.release()
            throw busError("sd_bus_add_match_async(\(rule))", r)
        }
        _ = sd_bus_slot_set_destroy_callback(slot) { p in
            if let p { Unmanaged<MatchBox>.fromOpaque(p).release() }
        }
        return Subscription(slot)
    }

    /// Waits until every queued outgoing message is written. Synchronous.
    public func flush() throws(DBusError) {
        try check("sd_bus_flush", sd_bus_flush(bus))
    }
}

private func optionalString(_ p: UnsafePointer<CChar>?) -> String? {
    p.map { String(cString: $0) }
}

/// Holds a reply closure for sd_bus_call_async; released by the slot destroy callback.
final class ReplyBox {
    let reply: (Result<[Value], DBusError>) -> Void
    init(_ reply: @escaping (Result<[Value], DBusError>) -> Void) { self.reply = reply }

    func deliver(_ m: OpaquePointer) {
        if sd_bus_message_is_method_error(m, nil) > 0 {
            let e = sd_bus_message_get_error(m)
            let name = optionalString(e?.pointee.name) ?? "org.freedesktop.DBus.Error.Failed"
            let message = optionalString(e?.pointee.message) ?? ""
            reply(.failure(DBusError(name: name, message: message)))
            return
        }
        do throws(DBusError) {
            reply(.success(try Marshal.readAll(m)))
        } catch {
            reply(.failure(error))
        }
    }
}

/// Holds a match closure; released by the slot destroy callback.
final class MatchBox {
    let handler: (SignalMessage) -> Void
    init(_ handler: @escaping (SignalMessage) -> Void) { self.handler = handler }

    func deliver(_ m: OpaquePointer) {
        // A message we cannot decode is delivered with no arguments rather than dropped.
        let arguments = (try? Marshal.readAll(m)) ?? []
        handler(SignalMessage(sender: optionalString(sd_bus_message_get_sender(m)),
                              path: optionalString(sd_bus_message_get_path(m)) ?? "",
                              interface: optionalString(sd_bus_message_get_interface(m)) ?? "",
                              member: optionalString(sd_bus_message_get_member(m)) ?? "",
                              arguments: arguments))
    }
}

/// An asynchronous call in flight. Discarding it does not cancel the call.
public final class PendingCall {
    private var slot: OpaquePointer?

    init(_ slot: OpaquePointer) { self.slot = slot }

    /// Cancels the call: its reply handler will not run. Idempotent; no effect after the reply.
    public func cancel() {
        guard let slot else { return }
        self.slot = nil
        // Take the bus's ref back (fails harmlessly with ESTALE if the call already
        // completed), then drop ours: the slot is freed and disconnected.
        _ = sd_bus_slot_set_floating(slot, 0)
        sd_bus_slot_unref(slot)
    }

    deinit {
        if let slot { sd_bus_slot_unref(slot) }
    }
}

/// A match subscription; active while alive and not cancelled.
public final class Subscription {
    private var slot: OpaquePointer?

    init(_ slot: OpaquePointer) { self.slot = slot }

    /// Removes the match. Idempotent.
    public func cancel() {
        guard let slot else { return }
        self.slot = nil
        sd_bus_slot_unref(slot)
    }

    deinit { cancel() }
}
