// What a caller may name: only resources listed in the configuration.
//
// Pure: arguments are parsed and checked against the configuration before
// polkit is asked and long before anything changes (validate, authorise, mutate).
public import ClusterCore

public struct Resources: Sendable {
    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// A floating address argument: "198.18.0.100" or "198.18.0.100/24", which must be
    /// one of `[[addresses]]` (with its configured prefix, if a prefix is given).
    public func floatingAddress(_ argument: String) -> Result<FloatingAddress, EffectorError> {
        let text = argument.trimmingSpaces
        guard !text.isEmpty else { return .failure(.init(.invalidArgument, "no address given")) }
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else {
            return .failure(.init(.invalidArgument, "'\(argument)' is not an IPv4 or IPv6 address"))
        }
        var prefix: Int?
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...address.maximumPrefixLength).contains(value) else {
                return .failure(.init(.invalidArgument, "'\(argument)' has an invalid prefix length"))
            }
            prefix = value
        }
        guard let configured = configuration.addresses.first(where: { $0.address == address }) else {
            return .failure(.init(.notConfigured, "\(address) is not a floating address of this cluster (see [[addresses]])"))
        }
        if let prefix, prefix != configured.prefixLength {
            return .failure(.init(.notConfigured, "\(address)/\(prefix) is configured as \(configured)"))
        }
        return .success(configured)
    }

    /// The `primary` argument of RejoinDatabase: the peer's node name or one of its addresses.
    public func primary(_ argument: String) -> Result<(node: NodeSettings, address: IPAddress), EffectorError> {
        guard configuration.database != nil else {
            return .failure(.init(.notConfigured, "no [database] is configured"))
        }
        let text = argument.trimmingSpaces
        guard !text.isEmpty else { return .failure(.init(.invalidArgument, "no primary given")) }
        let peer = configuration.peerNode
        if text == peer.name, let first = peer.addresses.first { return .success((peer, first)) }
        if let address = IPAddress(text), peer.addresses.contains(address) { return .success((peer, address)) }
        if text == configuration.localNode.name || IPAddress(text).map(configuration.localNode.addresses.contains) == true {
            return .failure(.init(.invalidArgument, "'\(text)' is this node; name the peer (\(peer.name)) as the primary"))
        }
        return .failure(.init(.notConfigured, "'\(text)' is not the peer node; the primary must be \(peer.name)"))
    }

    /// The `method` argument of CloneDatabase: auto (or ""), rewind or basebackup.
    public func cloneMethod(_ argument: String) -> Result<String, EffectorError> {
        guard configuration.database != nil else { return .failure(.init(.notConfigured, "no [database] is configured")) }
        let text = argument.trimmingSpaces
        let known = ["auto", "rewind", "basebackup"]
        if text.isEmpty { return .success("auto") }
        guard known.contains(text) else {
            return .failure(.init(.invalidArgument, "'\(argument)' is not a clone method: use auto, rewind or basebackup"))
        }
        return .success(text)
    }

    /// The argument of SetSynchronousStandby: "" (commits wait for no standby) or the peer's
    /// node name (plain or double-quoted); the value set is the quoted name.
    public func synchronousStandby(_ argument: String) -> Result<String, EffectorError> {
        guard configuration.database != nil else { return .failure(.init(.notConfigured, "no [database] is configured")) }
        let text = argument.trimmingSpaces
        if text.isEmpty { return .success("") }
        let peer = configuration.peerNode.name
        if text == peer || text == ReplicationGuard.quoted(peer) { return .success(ReplicationGuard.quoted(peer)) }
        return .failure(.init(.invalidArgument, "'\(argument)' is not the peer's standby: give \"\" or \(peer)"))
    }

    /// A free-text reason: printable, one line, at most 256 bytes.
    public func reason(_ argument: String) -> Result<String, EffectorError> {
        guard argument.utf8.count <= 256 else { return .failure(.init(.invalidArgument, "the reason is longer than 256 bytes")) }
        guard !argument.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            return .failure(.init(.invalidArgument, "the reason contains control characters"))
        }
        return .success(argument.isEmpty ? "unspecified" : argument)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
