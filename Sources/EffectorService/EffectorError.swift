// The effector's errors: each maps to one named D-Bus error of the contract,
// with a message an administrator understands.
import ClusterAPI

public struct EffectorError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notConfigured, invalidArgument, busy, databaseNotStandby, replicationLag, unitFailed, netlinkFailed
        /// Anything else that went wrong (a database that cannot be reached, a failed pg_rewind).
        case failed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// The D-Bus error name of the contract.
    public var busErrorName: String {
        switch code {
        case .notConfigured: Effector1.Error.notConfigured
        case .invalidArgument: Effector1.Error.invalidArgument
        case .busy: Effector1.Error.busy
        case .databaseNotStandby: Effector1.Error.databaseNotStandby
        case .replicationLag: Effector1.Error.replicationLag
        case .unitFailed: Effector1.Error.unitFailed
        case .netlinkFailed: Effector1.Error.netlinkFailed
        case .failed: "org.freedesktop.DBus.Error.Failed"
        }
    }
}
