import CSystemd
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An object to export on a bus: a path and its interfaces.
public final class ExportedObject {
    public let path: ObjectPath
    private(set) var interfaces: [ExportedInterface] = []

    public init(path: ObjectPath) {
        self.path = path
    }

    /// Adds an interface; takes effect at the next `BusConnection.export(_:)`.
    public func add(_ interface: ExportedInterface) {
        interfaces.append(interface)
    }
}

/// The description of one D-Bus interface: methods, read-only properties, signals.
/// Its members are captured when the object is exported.
public final class ExportedInterface {
    public let name: InterfaceName

    /// A named method or signal argument; the name must be a valid member-like
    /// name ([A-Za-z_][A-Za-z0-9_]*), it appears in the introspection XML.
    public struct Argument: Sendable {
        public var name: String
        public var signature: Signature
        public init(_ name: String, _ signature: Signature) {
            self.name = name
            self.signature = signature
        }
    }

    public struct MethodFlags: OptionSet, Sendable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        /// Callers other than root may call the method (SD_BUS_VTABLE_UNPRIVILEGED);
        /// without it sd-bus answers AccessDenied to non-root callers.
        public static let unprivileged = MethodFlags(rawValue: csd_flag_unprivileged())
        /// Marked deprecated in introspection.
        public static let deprecated = MethodFlags(rawValue: csd_flag_deprecated())
        /// Hidden from introspection.
        public static let hidden = MethodFlags(rawValue: csd_flag_hidden())
    }

    public enum PropertyChange: Sendable {
        /// PropertiesChanged carries the new value.
        case emitsChange
        /// PropertiesChanged lists the property as invalidated, without its value.
        case emitsInvalidation
        /// Never changes.
        case const
        /// Changes are not signalled.
        case none

        var flags: UInt64 {
            switch self {
            case .emitsChange: csd_flag_property_emits_change()
            case .emitsInvalidation: csd_flag_property_emits_invalidation()
            case .const: csd_flag_property_const()
            case .none: 0
            }
        }
    }

    struct Method {
        let name: String
        let inputs: [Argument]
        let outputs: [Argument]
        let flags: MethodFlags
        let handler: (MethodInvocation) -> Void
        var outSignature: Signature { Signature(unchecked: outputs.map(\.signature.rawValue).joined()) }
    }

    struct Property {
        let name: String
        let signature: Signature
        let change: PropertyChange
        let get: () -> Value
    }

    struct SignalDecl {
        let name: String
        let arguments: [Argument]
    }

    private(set) var methods: [Method] = []
    private(set) var properties: [Property] = []
    private(set) var signals: [SignalDecl] = []

    public init(name: InterfaceName) {
        self.name = name
    }

    /// Declares a method. sd-bus checks the input signature before `handler` runs
    /// (mismatch → org.freedesktop.DBus.Error.InvalidArgs). The handler must
    /// answer the invocation, now or later.
    public func method(_ name: String, in inputs: [Argument] = [], out outputs: [Argument] = [],
                       flags: MethodFlags = [], _ handler: @escaping (MethodInvocation) -> Void) {
        methods.append(Method(name: name, inputs: inputs, outputs: outputs, flags: flags, handler: handler))
    }

    /// Declares a read-only property; `get` must return a value of type `signature`.
    public func property(_ name: String, _ signature: Signature, change: PropertyChange = .emitsChange,
                         get: @escaping () -> Value) {
        properties.append(Property(name: name, signature: signature, change: change, get: get))
    }

    /// Declares a signal (for introspection; emit with `BusConnection.emitSignal`).
    public func signal(_ name: String, _ arguments: [Argument]) {
        signals.append(SignalDecl(name: name, arguments: arguments))
    }
}

/// What the C side holds for one exported interface: the sd_bus_vtable array,
/// the C strings it points to, and the Swift handlers, looked up by member name
/// from the single method / property trampolines.
final class VTableRegistration {
    let vtable: UnsafeMutablePointer<sd_bus_vtable>
    private var cStrings: [UnsafeMutablePointer<CChar>] = []
    let methods: [String: ExportedInterface.Method]
    let properties: [String: ExportedInterface.Property]

    init(_ interface: ExportedInterface) throws(DBusError) {
        var methods: [String: ExportedInterface.Method] = [:]
        for m in interface.methods { methods[m.name] = m }
        var properties: [String: ExportedInterface.Property] = [:]
        for p in interface.properties {
            guard p.signature.isSingleCompleteType else {
                throw .invalidArgs("property \(p.name): \"\(p.signature)\" is not a single complete type")
            }
            properties[p.name] = p
        }
        self.methods = methods
        self.properties = properties

        let count = 2 + interface.methods.count + interface.properties.count + interface.signals.count
        // calloc: unused union bytes must be zero (sd-bus-vtable.h).
        guard let raw = calloc(count, csd_vtable_size()) else { throw .failed("out of memory") }
        vtable = raw.bindMemory(to: sd_bus_vtable.self, capacity: count)

        var i = 0
        csd_vtable_start(vtable + i, 0)
        i += 1
        for m in interface.methods {
            csd_vtable_method(vtable + i, cString(m.name),
                              cString(m.inputs.map(\.signature.rawValue).joined()),
                              cString(m.outputs.map(\.signature.rawValue).joined()),
                              names(m.inputs + m.outputs),
                              { m, userdata, error in VTableRegistration.dispatchMethod(m, userdata, error) },
                              m.flags.rawValue)
            i += 1
        }
        for p in interface.properties {
            csd_vtable_property(vtable + i, cString(p.name), cString(p.signature.rawValue),
                                { _, _, _, property, reply, userdata, error in
                                    VTableRegistration.dispatchGet(property, reply, userdata, error)
                                }, p.change.flags)
            i += 1
        }
        for s in interface.signals {
            csd_vtable_signal(vtable + i, cString(s.name), cString(s.arguments.map(\.signature.rawValue).joined()),
                              names(s.arguments), 0)
            i += 1
        }
        csd_vtable_end(vtable + i)
    }

    deinit {
        free(vtable)
        for p in cStrings { free(p) }
    }

    private func cString(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        cStrings.append(p)
        return p
    }

    /// The `names` field: each argument name NUL-terminated, then a final NUL
    /// (what the SD_BUS_PARAM string-literal concatenation produces).
    private func names(_ arguments: [ExportedInterface.Argument]) -> UnsafeMutablePointer<CChar> {
        var bytes: [UInt8] = []
        for a in arguments {
            bytes.append(contentsOf: a.name.utf8)
            bytes.append(0)
        }
        bytes.append(0)
        let p = malloc(bytes.count)!.bindMemory(to: CChar.self, capacity: bytes.count)
        bytes.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { p.update(from: $0.baseAddress!, count: bytes.count) }
        }
        cStrings.append(p)
        return p
    }

    // Userdata is the passRetained registration owned by the slot (see
    // BusConnection.exportInterface), valid whenever sd-bus calls a trampoline.

    static func dispatchMethod(_ m: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?,
                               _ retError: UnsafeMutablePointer<sd_bus_error>?) -> Int32 {
        guard let m, let userdata else { return -EINVAL }
        let registration = Unmanaged<VTableRegistration>.fromOpaque(userdata).takeUnretainedValue()
        let member = sd_bus_message_get_member(m).map { String(cString: $0) } ?? ""
        guard let method = registration.methods[member] else {
            return setError(retError, .unknownMethod("unknown method \(member)"))
        }
        let arguments: [Value]
        do throws(DBusError) {
            arguments = try Marshal.readAll(m)
        } catch {
            return setError(retError, error)
        }
        method.handler(MethodInvocation(message: m, arguments: arguments, member: member,
                                        outSignature: method.outSignature))
        return 1
    }

    static func dispatchGet(_ property: UnsafePointer<CChar>?, _ reply: OpaquePointer?,
                            _ userdata: UnsafeMutableRawPointer?,
                            _ retError: UnsafeMutablePointer<sd_bus_error>?) -> Int32 {
        guard let property, let reply, let userdata else { return -EINVAL }
        let registration = Unmanaged<VTableRegistration>.fromOpaque(userdata).takeUnretainedValue()
        let name = String(cString: property)
        guard let p = registration.properties[name] else {
            return setError(retError, .unknownProperty("unknown property \(name)"))
        }
        do throws(DBusError) {
            try Marshal.append(p.get(), expected: p.signature, to: reply)
        } catch {
            return setError(retError, .failed("property \(name): \(error.message)"))
        }
        return 1
    }

    /// Fills an sd_bus_error and returns the negative errno sd-bus expects from a handler.
    static func setError(_ retError: UnsafeMutablePointer<sd_bus_error>?, _ error: DBusError) -> Int32 {
        let name = ErrorName.isValid(error.name) ? error.name : "org.freedesktop.DBus.Error.Failed"
        let r = sd_bus_error_set(retError, name, error.message)
        return r < 0 ? r : -EIO
    }
}

/// An incoming method call. Answer exactly once with `reply` or `fail`, now or
/// later (it holds a reference on the call message). Answering twice is a
/// programmer error; an invocation deinitialised unanswered replies
/// org.freedesktop.DBus.Error.Failed "no reply was produced".
public final class MethodInvocation {
    public let arguments: [Value]
    /// The caller's unique name.
    public let sender: String
    public let member: String
    public let path: String
    public let interface: String
    /// The call carried ALLOW_INTERACTIVE_AUTHORIZATION: the caller can wait while
    /// polkit asks someone to authenticate (pass it to `PolkitAuthority.check`).
    public let allowsInteractiveAuthorization: Bool
    private var message: OpaquePointer?
    private let outSignature: Signature

    init(message: OpaquePointer, arguments: [Value], member: String, outSignature: Signature) {
        self.message = sd_bus_message_ref(message)
        self.arguments = arguments
        self.member = member
        self.outSignature = outSignature
        sender = sd_bus_message_get_sender(message).map { String(cString: $0) } ?? ""
        path = sd_bus_message_get_path(message).map { String(cString: $0) } ?? ""
        interface = sd_bus_message_get_interface(message).map { String(cString: $0) } ?? ""
        allowsInteractiveAuthorization = sd_bus_message_get_allow_interactive_authorization(message) > 0
    }

    /// Who called: the sender's uid, pid and systemd unit, as the bus and /proc tell
    /// (for the logs; authorisation goes through polkit, not through these).
    public var callerCredentials: CallerCredentials {
        guard let message else { return CallerCredentials() }
        // SD_BUS_CREDS_PID | _UID | _UNIT | _AUGMENT (64-bit enumerators Swift does not import).
        let mask: UInt64 = (1 << 0) | (1 << 3) | (1 << 17) | (1 << 63)
        var creds: OpaquePointer?
        guard sd_bus_query_sender_creds(message, mask, &creds) >= 0, let creds else { return CallerCredentials() }
        defer { sd_bus_creds_unref(creds) }
        var result = CallerCredentials()
        var uid: uid_t = 0
        if sd_bus_creds_get_uid(creds, &uid) >= 0 { result.uid = uid }
        var pid: pid_t = 0
        if sd_bus_creds_get_pid(creds, &pid) >= 0 { result.pid = pid }
        var unit: UnsafePointer<CChar>?
        if sd_bus_creds_get_unit(creds, &unit) >= 0, let unit { result.unit = String(cString: unit) }
        return result
    }

    deinit {
        if message != nil { fail(.failed("no reply was produced")) }
    }

    private func take() -> OpaquePointer {
        guard let m = message else { preconditionFailure("MethodInvocation \(member) answered twice") }
        message = nil
        return m
    }

    /// Replies with `values`, which must match the method's declared outputs;
    /// if they do not, the caller gets org.freedesktop.DBus.Error.Failed instead.
    public func reply(_ values: [Value] = []) {
        let m = take()
        defer { sd_bus_message_unref(m) }
        guard sd_bus_message_get_expect_reply(m) > 0 else { return }
        var reply: OpaquePointer?
        guard sd_bus_message_new_method_return(m, &reply) >= 0, let reply else { return }
        defer { sd_bus_message_unref(reply) }
        do throws(DBusError) {
            try Marshal.append(values, matching: outSignature, to: reply)
        } catch {
            Self.sendError(m, .failed("invalid reply to \(member): \(error.message)"))
            return
        }
        _ = sd_bus_send(nil, reply, nil)
    }

    /// Replies with an error (an invalid error name becomes org.freedesktop.DBus.Error.Failed).
    public func fail(_ error: DBusError) {
        let m = take()
        defer { sd_bus_message_unref(m) }
        Self.sendError(m, error)
    }

    private static func sendError(_ m: OpaquePointer, _ error: DBusError) {
        guard sd_bus_message_get_expect_reply(m) > 0 else { return }
        var e = sd_bus_error()
        defer { sd_bus_error_free(&e) }
        let name = ErrorName.isValid(error.name) ? error.name : "org.freedesktop.DBus.Error.Failed"
        _ = sd_bus_error_set(&e, name, error.message)
        _ = sd_bus_reply_method_error(m, &e)
    }
}

/// The credentials of a method call's sender (see `MethodInvocation.callerCredentials`).
public struct CallerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var uid: UInt32?
    public var pid: Int32?
    public var unit: String?
    public init(uid: UInt32? = nil, pid: Int32? = nil, unit: String? = nil) {
        self.uid = uid
        self.pid = pid
        self.unit = unit
    }
    public var description: String {
        "uid=\(uid.map(String.init) ?? "?") pid=\(pid.map(String.init) ?? "?") unit=\(unit ?? "?")"
    }
}
