// Announcing a floating address to its link: gratuitous ARP (IPv4) over an AF_PACKET socket,
// unsolicited neighbour advertisement (IPv6) over a raw ICMPv6 socket. The packet socket is
// opened on first use (in the network namespace of the thread that first announces) and kept:
// closing a packet socket waits for an RCU grace period (packet_release → synchronize_net),
// which cost 5–20 ms per round when it was opened and closed each time.
public import ClusterCore
import CNetlink
import Glibc

/// Sends announcements for a floating address.
public protocol Announcing: AnyObject {
    /// Sends ONE round of announcements for the address on its interface and returns (the caller
    /// schedules `arpCount` rounds `arpInterval` apart on its event loop). IPv4: a gratuitous ARP
    /// request (sender IP = target IP, target MAC 00:00:00:00:00:00, broadcast) and a gratuitous
    /// ARP reply (broadcast, target MAC = own MAC). IPv6: an unsolicited neighbour advertisement
    /// to ff02::1 (override flag, target link-layer address option), hop limit 255.
    func announce(_ address: FloatingAddress) throws(NetlinkError)
}

public final class PacketAnnouncer: Announcing {
    private var packetSocket: Int32 = -1

    public init() {}

    deinit {
        if packetSocket >= 0 { close(packetSocket) }
    }

    public func announce(_ address: FloatingAddress) throws(NetlinkError) {
        let operation = "announce \(address.address) on \(address.interface)"
        switch address.address {
        case .v4:
            try announceIPv4(address, operation: operation)
        case .v6:
            try announceIPv6(address, operation: operation)
        }
    }

    private func announceIPv4(_ address: FloatingAddress, operation: String) throws(NetlinkError) {
        // Protocol 0: a send-only packet socket, so no ARP traffic is queued to it meanwhile;
        // the frame's EtherType comes from sll_protocol below.
        if packetSocket < 0 {
            packetSocket = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard packetSocket >= 0 else { throw NetlinkError(operation: operation, errno: Glibc.errno) }
        }
        let fd = packetSocket
        let (index, mac) = try Self.ethernetInterface(fd: fd, name: address.interface, operation: operation)
        var destination = sockaddr_ll()
        destination.sll_family = UInt16(AF_PACKET)
        destination.sll_protocol = UInt16(ETH_P_ARP).bigEndian
        destination.sll_ifindex = index
        destination.sll_halen = 6
        destination.sll_addr = (0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0)
        let ip = address.address.bytes
        for frame in [ARPPacket.gratuitous(operation: 1, mac: mac, ip: ip),
                      ARPPacket.gratuitous(operation: 2, mac: mac, ip: ip)] {
            let sent = frame.withUnsafeBytes { raw in
                withUnsafePointer(to: &destination) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                    }
                }
            }
            guard sent == frame.count else {
                throw NetlinkError(operation: operation, errno: sent < 0 ? Glibc.errno : EMSGSIZE)
            }
        }
    }

    private func announceIPv6(_ address: FloatingAddress, operation: String) throws(NetlinkError) {
        let fd = socket(AF_INET6, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMPV6))
        guard fd >= 0 else { throw NetlinkError(operation: operation, errno: Glibc.errno) }
        defer { close(fd) }
        let (index, mac) = try Self.ethernetInterface(fd: fd, name: address.interface, operation: operation)
        // RFC 4861 7.2.6: hop limit 255 (receivers drop anything else); out of this interface;
        // not looped back to ourselves. The kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets.
        var hops: Int32 = 255
        var interface = UInt32(index)
        var loop: UInt32 = 0
        for (option, value) in [(IPV6_MULTICAST_HOPS, withUnsafeBytes(of: &hops) { Array($0) }),
                                (IPV6_UNICAST_HOPS, withUnsafeBytes(of: &hops) { Array($0) }),
                                (IPV6_MULTICAST_IF, withUnsafeBytes(of: &interface) { Array($0) }),
                                (IPV6_MULTICAST_LOOP, withUnsafeBytes(of: &loop) { Array($0) })] {
            let result = value.withUnsafeBytes { setsockopt(fd, Int32(IPPROTO_IPV6), option, $0.baseAddress, socklen_t($0.count)) }
            guard result == 0 else { throw NetlinkError(operation: operation, errno: Glibc.errno) }
        }
        var destination = sockaddr_in6()
        destination.sin6_family = sa_family_t(AF_INET6)
        destination.sin6_scope_id = UInt32(index)
        withUnsafeMutableBytes(of: &destination.sin6_addr) { raw in
            for (i, byte) in NeighbourAdvertisement.allNodes.enumerated() { raw[i] = byte }
        }
        let packet = NeighbourAdvertisement.unsolicited(target: address.address.bytes, mac: mac)
        let sent = packet.withUnsafeBytes { raw in
            withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        guard sent == packet.count else {
            throw NetlinkError(operation: operation, errno: sent < 0 ? Glibc.errno : EMSGSIZE)
        }
    }

    /// The index and MAC of an Ethernet interface, looked up on `fd` (the fd's namespace).
    static func ethernetInterface(fd: Int32, name: String, operation: String) throws(NetlinkError) -> (Int32, [UInt8]) {
        let missing = NetlinkError(operation: operation, errno: ENODEV, message: "no interface named \(name)")
        let utf8 = Array(name.utf8)
        guard !utf8.isEmpty, utf8.count < Int(IFNAMSIZ), !utf8.contains(0) else { throw missing }
        let index = cnl_interface_index(fd, name)
        guard index > 0 else {
            let code = Glibc.errno
            if code == ENODEV { throw missing }
            throw NetlinkError(operation: operation, errno: code)
        }
        var mac = [UInt8](repeating: 0, count: 6)
        var hardwareType: UInt16 = 0
        let result = mac.withUnsafeMutableBufferPointer { cnl_interface_hwaddr(fd, name, $0.baseAddress, &hardwareType) }
        guard result == 0 else {
            let code = Glibc.errno
            if code == ENODEV { throw missing }
            throw NetlinkError(operation: operation, errno: code)
        }
        guard hardwareType == UInt16(ARPHRD_ETHER) else {
            throw NetlinkError(operation: operation, errno: EOPNOTSUPP, message: "\(name) is not an Ethernet interface")
        }
        return (index, mac)
    }
}

/// The 28-byte ARP payload (Ethernet/IPv4) of a gratuitous announcement.
enum ARPPacket {
    /// Operation 1 (request): target MAC all zeros. Operation 2 (reply): target MAC = `mac`.
    /// Sender and target IP are both `ip`.
    static func gratuitous(operation: UInt16, mac: [UInt8], ip: [UInt8]) -> [UInt8] {
        var packet: [UInt8] = [0x00, 0x01,  // hardware type: Ethernet
                               0x08, 0x00,  // protocol type: IPv4
                               6, 4,        // address lengths
                               UInt8(operation >> 8), UInt8(truncatingIfNeeded: operation)]
        packet += mac + ip
        packet += (operation == 1 ? [UInt8](repeating: 0, count: 6) : mac) + ip
        return packet
    }
}

/// An ICMPv6 neighbour advertisement (RFC 4861 4.4) as sent on a raw ICMPv6 socket.
enum NeighbourAdvertisement {
    static let allNodes: [UInt8] = [0xFF, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]

    /// Type 136, override flag only (not a router, not solicited), the target address and a
    /// target link-layer address option (type 2, length 1 = 8 bytes). Checksum left 0 for the kernel.
    static func unsolicited(target: [UInt8], mac: [UInt8]) -> [UInt8] {
        var packet: [UInt8] = [136, 0, 0, 0,   // type, code, checksum
                               0x20, 0, 0, 0]  // R=0 S=0 O=1, reserved
        packet += target
        packet += [2, 1] + mac
        return packet
    }
}
