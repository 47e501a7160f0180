// An asynchronous client of polkit's org.freedesktop.PolicyKit1.Authority.
//
// Uses only DBusKit's public API (so it compiles inside DBusKit or on top of it).

/// Who is asking: polkit identifies the subject from the bus connection's
/// credentials (uid, pid, and its session via logind).
public struct PolkitSubject: Hashable, Sendable {
    /// polkit's subject kind, e.g. "system-bus-name".
    public let kind: String
    /// The subject's details (a{sv}).
    public let details: [String: Value]

    /// The connection that owns `name` (normally `MethodInvocation.sender`).
    public static func busName(_ name: String) -> PolkitSubject {
        PolkitSubject(kind: "system-bus-name", details: ["name": .string(name)])
    }

    /// The subject as polkit's `(sa{sv})`.
    var value: Value {
        .structure([.string(kind), .vardict(details)])
    }
}

/// The outcome of an authorization check.
public enum PolkitResult: Equatable, Sendable {
    case allowed
    /// polkit would authorize after interactive authentication (an agent), which
    /// the caller did not allow.
    case challenge
    /// Not authorized, or polkit could not be asked (then the reason starts with
    /// "polkit is not available").
    case denied(reason: String)
    /// Not asked: too many checks of this caller (or of everyone) are pending. The
    /// caller may try again once its earlier calls are answered.
    case limited(reason: String)
}

/// Asks polkit (org.freedesktop.PolicyKit1 on the given bus) whether a subject
/// may perform an action. Confined to the loop thread, like its connection.
/// Fails closed: every error, a timeout, or no polkitd on the bus is `.denied`.
public final class PolkitAuthority {
    public static let busName: BusName = "org.freedesktop.PolicyKit1"
    public static let objectPath: ObjectPath = "/org/freedesktop/PolicyKit1/Authority"
    public static let interface: InterfaceName = "org.freedesktop.PolicyKit1.Authority"

    /// CheckAuthorization flag AllowUserInteraction.
    static let allowUserInteraction: UInt32 = 1

    private let bus: BusConnection
    /// How long to wait for polkit's answer. Long by default: with user
    /// interaction allowed, polkit waits for the authentication agent.
    public var timeout: Duration = .seconds(30)

    /// Checks pending per subject (its bus name): an unprivileged caller that floods the daemon
    /// with calls needing authorization is refused at once beyond this, without asking polkit.
    public var maximumPendingPerSubject = 2
    /// Checks pending in all: beyond this only privileged callers are served (see `check`), so
    /// many connections of one user cannot starve the daemons' own calls either.
    public var maximumPending = 8
    private var pendingBySubject: [String: Int] = [:]
    public private(set) var pending = 0
    /// Checks answered `.limited`, in all; `limitedReport()` says when to log them.
    public private(set) var limitedTotal: UInt64 = 0
    private var limitedReported: UInt64 = 0
    private var limitedReportedAt: Duration?

    /// Who called, by sender: a connection's credentials never change and its unique name is
    /// never reused, so they are read once per connection (reading them is a round trip to
    /// the bus, which a flood must not multiply). At most 512 senders kept; then forgotten.
    private var callers: [String: CallerCredentials] = [:]

    /// The caller's credentials, read once per sender.
    public func caller(of call: MethodInvocation) -> CallerCredentials {
        if let known = callers[call.sender] { return known }
        if callers.count >= 512 { callers.removeAll(keepingCapacity: true) }
        let credentials = call.callerCredentials
        callers[call.sender] = credentials
        return credentials
    }

    /// Denials logged in the current ten seconds, and those not logged since.
    private var denialsLogged = 0
    private var denialsSuppressed: UInt64 = 0
    private var denialWindow: Duration?

    /// Whether to log this denial (at most 5 lines per ten seconds), and how many were not
    /// logged before it: a flood of denied calls costs the journal a few lines.
    public func denialBudget() -> (log: Bool, suppressed: UInt64) {
        let now = bus.loop.now
        if denialWindow.map({ now - $0 >= .seconds(10) }) ?? true {
            denialWindow = now
            denialsLogged = 0
        }
        guard denialsLogged < 5 else {
            denialsSuppressed += 1
            return (false, 0)
        }
        denialsLogged += 1
        defer { denialsSuppressed = 0 }
        return (true, denialsSuppressed)
    }

    /// The number of `.limited` answers since the last report, at most once per ten seconds
    /// (nil otherwise): a flood is logged as one line per ten seconds, not one per call.
    public func limitedReport() -> UInt64? {
        let now = bus.loop.now
        if let at = limitedReportedAt, now - at < .seconds(10) { return nil }
        guard limitedTotal > limitedReported else { return nil }
        defer { limitedReported = limitedTotal; limitedReportedAt = now }
        return limitedTotal - limitedReported
    }

    /// Results that could not be obtained from the bus at all, delivered at the
    /// next loop iteration (so `reply` never runs inside `check`).
    private var deferredFailures: [Int: EventSource] = [:]
    private var nextDeferredID = 0

    public init(bus: BusConnection) {
        self.bus = bus
    }

    /// Asks polkit with CheckAuthorization(subject, action, details, flags, "")
    /// → (is_authorized, is_challenge, details). `interactive`: the method call
    /// being authorized carried ALLOW_INTERACTIVE_AUTHORIZATION, so polkit may
    /// start an authentication agent (flag AllowUserInteraction).
    ///
    /// Asynchronous: returns at once; `reply` runs later on the loop thread,
    /// exactly once (unless the connection is deinitialised first: it drops
    /// pending calls). Any error — polkit's own, such as an undeclared action,
    /// included —, a timeout or the absence of polkitd gives
    /// `.denied(reason: "polkit is not available: <error name>: <message>")`.
    /// Only root (or an action's owner) may ask about other users' subjects or
    /// pass details: in a daemon running as another user, every check fails so.
    ///
    /// Bounded: beyond `maximumPendingPerSubject` checks pending for the subject, or
    /// `maximumPending` in all, the answer is `.limited` at once and polkit is not asked —
    /// unless `privileged()` says the caller is one the daemon always serves (evaluated
    /// only then, as it may cost a bus round trip).
    public func check(_ action: String, subject: PolkitSubject, details: [String: String] = [:],
                      interactive: Bool = false, privileged: () -> Bool = { false },
                      reply: @escaping (PolkitResult) -> Void) {
        let key = subject.details["name"]?.string ?? subject.kind
        let overSubject = pendingBySubject[key, default: 0] >= maximumPendingPerSubject
        let overAll = pending >= maximumPending
        if (overSubject || overAll) && !privileged() {
            limitedTotal += 1
            return deliverLater(
                .limited(
                    reason: overSubject
                        ? "\(maximumPendingPerSubject) authorization checks of this caller are still pending"
                        : "\(pending) authorization checks are pending"), reply)
        }
        pendingBySubject[key, default: 0] += 1
        pending += 1
        let reply: (PolkitResult) -> Void = { [weak self] result in
            if let self {
                pending -= 1
                if let left = pendingBySubject[key], left > 1 { pendingBySubject[key] = left - 1 } else { pendingBySubject[key] = nil }
            }
            reply(result)
        }
        let arguments: [Value] = [
            subject.value,
            .string(action),
            .dictionary(key: "s", value: "s", details.sorted { $0.key < $1.key }.map {
                DictEntry(key: .string($0.key), value: .string($0.value))
            }),
            .uint32(interactive ? Self.allowUserInteraction : 0),
            .string(""),  // no cancellation id
        ]
        do throws(DBusError) {
            try bus.call(destination: Self.busName, path: Self.objectPath, interface: Self.interface,
                         member: "CheckAuthorization", arguments, timeout: timeout) { result in
                reply(Self.interpret(result))
            }
        } catch {
            deliverLater(.denied(reason: "polkit is not available: \(error.description)"), reply)
        }
    }

    /// Maps a reply of CheckAuthorization to a result.
    static func interpret(_ result: Result<[Value], DBusError>) -> PolkitResult {
        let values: [Value]
        switch result {
        case .failure(let error):
            return .denied(reason: "polkit is not available: \(error.description)")
        case .success(let v):
            values = v
        }
        guard values.count == 1, let fields = values[0].structure, fields.count == 3,
              let authorized = fields[0].bool, let challenge = fields[1].bool else {
            let signature = values.map(\.signature.rawValue).joined()
            return .denied(reason: "polkit is not available: unexpected CheckAuthorization reply (\(signature))")
        }
        if authorized { return .allowed }
        if challenge { return .challenge }
        var reason = "denied by polkit policy"
        if let d = fields[2].dictionary,
           d.contains(where: { $0.key.string == "polkit.dismissed" && $0.value.string == "true" }) {
            reason = "the authentication was dismissed"
        }
        return .denied(reason: reason)
    }

    private func deliverLater(_ result: PolkitResult, _ reply: @escaping (PolkitResult) -> Void) {
        let id = nextDeferredID
        nextDeferredID += 1
        do throws(SystemError) {
            deferredFailures[id] = try bus.loop.addDeferred {
                // Strong: the failure is delivered even if the authority is released meanwhile.
                self.deferredFailures[id] = nil
                reply(result)
            }
        } catch {
            // The loop cannot even defer: answer now rather than never.
            reply(result)
        }
    }

    /// The D-Bus error a caller should get for `result`, nil when allowed:
    /// denied → org.freedesktop.DBus.Error.AccessDenied,
    /// challenge → org.freedesktop.DBus.Error.InteractiveAuthorizationRequired.
    public static func error(for result: PolkitResult, action: String) -> DBusError? {
        switch result {
        case .allowed:
            nil
        case .challenge:
            DBusError(name: "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                      message: "Authentication is required to perform \(action)")
        case .denied(let reason):
            .accessDenied("Not authorized to perform \(action): \(reason)")
        case .limited(let reason):
            DBusError(name: "org.freedesktop.DBus.Error.LimitsExceeded", message: "Not asked for \(action): \(reason); try again later")
        }
    }
}
