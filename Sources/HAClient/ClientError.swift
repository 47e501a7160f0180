// Errors of the client, each turned into one line for stderr and an exit status.
public import DBusKit
import ClusterAPI

/// kusu-ha's exit statuses (documented in `kusu-ha --help`).
public enum ExitStatus: Int32, Sendable {
    case success = 0
    /// The operation was refused or failed.
    case failed = 1
    /// polkit did not authorise the caller.
    case notAuthorized = 3
    /// The system bus or a service could not be reached.
    case unreachable = 4
    /// Bad command line (ArgumentParser's EX_USAGE).
    case usage = 64
}

/// A failed call to one of the services, or no bus at all.
public struct ClientError: Error, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A call to `service` failed with `error`.
        case call(Service, DBusError)
        /// Connecting to the system bus failed.
        case noBus(DBusError)
    }

    public var kind: Kind

    public init(_ kind: Kind) { self.kind = kind }

    public static func call(_ service: Service, _ error: DBusError) -> ClientError { ClientError(.call(service, error)) }

    static let accessDenied = "org.freedesktop.DBus.Error.AccessDenied"
    static let interactiveRequired = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
    static let notSupported = "org.freedesktop.DBus.Error.NotSupported"
    static let unreachableNames: Set<String> = [
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.systemd1.NoSuchUnit",
        "org.freedesktop.DBus.Error.Spawn.ChildExited",
        "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
        "org.freedesktop.DBus.Error.Spawn.Failed",
    ]
    static let noAnswerNames: Set<String> = [
        "org.freedesktop.DBus.Error.NoReply",
        "org.freedesktop.DBus.Error.Timeout",
        "org.freedesktop.DBus.Error.TimedOut",
        "org.freedesktop.DBus.Error.Disconnected",
    ]
    static let effectorPrefix = Effector1.interface + ".Error."

    /// The one line to print (without the "kusu-ha: " prefix).
    public var line: String {
        switch kind {
        case .noBus(let e):
            return "cannot connect to the system bus: \(e.message)"
        case .call(let service, let e):
            if e.name == Self.accessDenied || e.name == Self.interactiveRequired {
                return "not authorized: \(e.message.isEmpty ? e.name : e.message)"
            }
            if Self.unreachableNames.contains(e.name) { return "\(service.daemon) is not running" }
            if Self.noAnswerNames.contains(e.name) {
                return "\(service.daemon) did not answer: \(e.message.isEmpty ? e.name : e.message)"
            }
            if e.name == Self.notSupported { return e.message.isEmpty ? "not supported" : e.message }
            if e.name.hasPrefix(Self.effectorPrefix) {
                let short = String(e.name.dropFirst(Self.effectorPrefix.count))
                return e.message.isEmpty ? short : "\(short): \(e.message)"
            }
            return e.message.isEmpty ? e.name : "\(e.name): \(e.message)"
        }
    }

    public var exitStatus: ExitStatus {
        switch kind {
        case .noBus: return .unreachable
        case .call(_, let e):
            if e.name == Self.accessDenied || e.name == Self.interactiveRequired { return .notAuthorized }
            if Self.unreachableNames.contains(e.name) || Self.noAnswerNames.contains(e.name) { return .unreachable }
            return .failed
        }
    }
}
