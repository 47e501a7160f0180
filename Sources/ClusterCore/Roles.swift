/// The role of a node in the pair, as published on the bus (`Role`, `PeerRole`) and carried
/// in every heartbeat.
public enum NodeRole: String, Sendable, CaseIterable, CustomStringConvertible {
    case standby
    case takingOver = "taking-over"
    case active
    case releasing
    case failed

    /// The stable code of the role on the wire (heartbeat version 1). Never renumber.
    public var wireCode: UInt8 {
        switch self {
        case .standby: 1
        case .takingOver: 2
        case .active: 3
        case .releasing: 4
        case .failed: 5
        }
    }

    /// The role with the given wire code, or `nil` for an unknown code.
    public init?(wireCode: UInt8) {
        switch wireCode {
        case 1: self = .standby
        case 2: self = .takingOver
        case 3: self = .active
        case 4: self = .releasing
        case 5: self = .failed
        default: return nil
        }
    }

    public var description: String { rawValue }
}

/// The health of the peer as seen from this node (`PeerState` on the bus).
public enum PeerState: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Nothing heard yet since start, and the dead time has not yet passed.
    case unknown
    /// The latest valid heartbeat is younger than the warn time.
    case alive
    /// The latest valid heartbeat is older than the warn time but younger than the dead time.
    case late
    /// Every link has been silent for at least the dead time.
    case dead

    public var description: String { rawValue }
}
