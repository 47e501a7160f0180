// Floating addresses through rtnetlink: RTM_NEWADDR / RTM_DELADDR / an RTM_GETADDR dump,
// on one NETLINK_ROUTE socket (so in the network namespace that socket was opened in).
public import ClusterCore
import CNetlink
import Glibc

/// Adds, removes and checks the configured floating addresses. All calls are idempotent.
public protocol AddressManaging: AnyObject {
    /// Adds the address; already present (EEXIST) is success. Returns whether it was added now (false = was there).
    func add(_ address: FloatingAddress) throws(NetlinkError) -> Bool
    /// Removes it; absent (EADDRNOTAVAIL / not found) is success. Returns whether it was removed now.
    func remove(_ address: FloatingAddress) throws(NetlinkError) -> Bool
    /// Whether the interface currently holds address/prefix (an RTM_GETADDR dump, filtered).
    func holds(_ address: FloatingAddress) throws(NetlinkError) -> Bool
}

/// `AddressManaging` over one rtnetlink socket, reused for every request. Interface names are
/// resolved on that socket too (RTM_GETLINK), so every call acts in the socket's namespace
/// whatever thread makes it. IPv6 addresses are added with IFA_F_NODAD: a floating address
/// must be usable at once, and the announcement that follows is what claims it.
public final class RtnetlinkAddressManager: AddressManaging {
    private let socket: NetlinkSocket

    public init() throws(NetlinkError) {
        socket = try NetlinkSocket()
    }

    public func add(_ address: FloatingAddress) throws(NetlinkError) -> Bool {
        let operation = "add \(address) on \(address.interface)"
        let header = try addressHeader(address, operation: operation, flags: address.address.isIPv4 ? 0 : UInt8(IFA_F_NODAD))
        var payload = header.bytes
        let bytes = address.address.bytes
        if address.address.isIPv4 {
            NetlinkWire.appendAttribute(type: Int(IFA_LOCAL), value: bytes, to: &payload)
            NetlinkWire.appendAttribute(type: Int(IFA_ADDRESS), value: bytes, to: &payload)
            if address.prefixLength < 31 {
                NetlinkWire.appendAttribute(type: Int(IFA_BROADCAST),
                                            value: Self.broadcast(bytes, prefixLength: address.prefixLength), to: &payload)
            }
        } else {
            NetlinkWire.appendAttribute(type: Int(IFA_ADDRESS), value: bytes, to: &payload)
        }
        do {
            _ = try socket.request(type: Int(RTM_NEWADDR), flags: Int32(NLM_F_CREATE | NLM_F_EXCL),
                                   payload: payload, operation: operation)
            return true
        } catch where error.errno == EEXIST {
            return false
        }
    }

    public func remove(_ address: FloatingAddress) throws(NetlinkError) -> Bool {
        let operation = "remove \(address) from \(address.interface)"
        let header = try addressHeader(address, operation: operation, flags: 0)
        var payload = header.bytes
        let bytes = address.address.bytes
        if address.address.isIPv4 {
            NetlinkWire.appendAttribute(type: Int(IFA_LOCAL), value: bytes, to: &payload)
        } else {
            NetlinkWire.appendAttribute(type: Int(IFA_ADDRESS), value: bytes, to: &payload)
        }
        do {
            _ = try socket.request(type: Int(RTM_DELADDR), payload: payload, operation: operation)
            return true
        } catch where error.errno == EADDRNOTAVAIL || error.errno == ENOENT {
            return false
        }
    }

    public func holds(_ address: FloatingAddress) throws(NetlinkError) -> Bool {
        let operation = "look for \(address) on \(address.interface)"
        let header = try addressHeader(address, operation: operation, flags: 0)
        // With strict checking the kernel filters by index; without it, every address comes back.
        let request = NetlinkWire.addressHeader(family: header.family, prefixLength: 0, flags: 0, scope: 0,
                                                index: header.index)
        let wanted = address.address.bytes
        // A dump the kernel marks inconsistent (NLM_F_DUMP_INTR: addresses changed meanwhile) is retried.
        for _ in 0..<3 {
            let messages = try socket.request(type: Int(RTM_GETADDR), payload: request, dump: true, operation: operation)
            if messages.contains(where: { Int32($0.flags) & NLM_F_DUMP_INTR != 0 }) { continue }
            return messages.contains { (message: NetlinkMessage) -> Bool in
                guard Int32(message.type) == Int32(RTM_NEWADDR),
                      let parsed = NetlinkWire.parseAddress(message.payload),
                      parsed.family == header.family, parsed.interfaceIndex == header.index,
                      Int(parsed.prefixLength) == address.prefixLength else { return false }
                let value = address.address.isIPv4
                    ? (parsed.attribute(Int(IFA_LOCAL)) ?? parsed.attribute(Int(IFA_ADDRESS)))
                    : (parsed.attribute(Int(IFA_ADDRESS)) ?? parsed.attribute(Int(IFA_LOCAL)))
                return value == wanted
            }
        }
        throw NetlinkError(operation: operation, errno: EAGAIN, message: "the address list kept changing while being read")
    }

    // MARK: helpers

    private struct Header {
        var family: UInt8
        var index: UInt32
        var bytes: [UInt8]
    }

    /// `struct ifaddrmsg` for the address, after checking the prefix length and resolving the interface.
    private func addressHeader(_ address: FloatingAddress, operation: String, flags: UInt8) throws(NetlinkError) -> Header {
        let maximum = address.address.isIPv4 ? 32 : 128
        guard (0...maximum).contains(address.prefixLength) else {
            throw NetlinkError(operation: operation, errno: EINVAL,
                               message: "prefix length \(address.prefixLength) is out of range")
        }
        let index = try interfaceIndex(address.interface, operation: operation)
        let family = UInt8(address.address.isIPv4 ? AF_INET : AF_INET6)
        return Header(family: family, index: index,
                      bytes: NetlinkWire.addressHeader(family: family, prefixLength: UInt8(address.prefixLength),
                                                       flags: flags, scope: UInt8(RT_SCOPE_UNIVERSE.rawValue), index: index))
    }

    /// The interface's index, by an RTM_GETLINK request naming it (IFLA_IFNAME).
    func interfaceIndex(_ name: String, operation: String) throws(NetlinkError) -> UInt32 {
        let missing = NetlinkError(operation: operation, errno: ENODEV, message: "no interface named \(name)")
        let utf8 = Array(name.utf8)
        guard !utf8.isEmpty, utf8.count < Int(IFNAMSIZ), !utf8.contains(0) else { throw missing }
        var payload = [UInt8](repeating: 0, count: NetlinkWire.linkHeaderLength)  // struct ifinfomsg, AF_UNSPEC
        NetlinkWire.appendAttribute(type: Int(IFLA_IFNAME), value: utf8 + [0], to: &payload)
        let answers: [NetlinkMessage]
        do {
            answers = try socket.request(type: Int(RTM_GETLINK), payload: payload, operation: operation)
        } catch where error.errno == ENODEV {
            throw missing
        }
        for answer in answers where Int32(answer.type) == Int32(RTM_NEWLINK) {
            if let index = NetlinkWire.parseLinkIndex(answer.payload), index > 0 { return UInt32(index) }
        }
        throw NetlinkError(operation: operation, errno: EBADMSG, message: "the kernel did not describe interface \(name)")
    }

    /// The IPv4 broadcast address of the address's subnet.
    static func broadcast(_ bytes: [UInt8], prefixLength: Int) -> [UInt8] {
        let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let hostMask: UInt32 = prefixLength >= 32 ? 0 : UInt32.max >> UInt32(prefixLength)
        let broadcast = value | hostMask
        return [UInt8(broadcast >> 24), UInt8(truncatingIfNeeded: broadcast >> 16),
                UInt8(truncatingIfNeeded: broadcast >> 8), UInt8(truncatingIfNeeded: broadcast)]
    }
}
