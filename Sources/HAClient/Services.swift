import ClusterAPI

/// The two services the client talks to.
public enum Service: Sendable, Equatable, CaseIterable {
    case heartbeat
    case effector

    /// The daemon's program name, as administrators know it.
    public var daemon: String {
        switch self {
        case .heartbeat: "kusu-hbd"
        case .effector: "kusu-effectord"
        }
    }

    public var busName: String {
        switch self {
        case .heartbeat: Heartbeat1.busName
        case .effector: Effector1.busName
        }
    }

    public var objectPath: String {
        switch self {
        case .heartbeat: Heartbeat1.objectPath
        case .effector: Effector1.objectPath
        }
    }

    public var interface: String {
        switch self {
        case .heartbeat: Heartbeat1.interface
        case .effector: Effector1.interface
        }
    }
}
