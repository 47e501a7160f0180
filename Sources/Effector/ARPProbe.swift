// Is a floating address still in use on its link? An ARP probe in the manner of RFC 5227:
// a request with sender IP 0.0.0.0 and target IP = the address, then listen for any ARP
// packet whose sender IP is the address. If the active node still answers on the service
// network, a standby must not take the address, whatever the heartbeats say.
public import ClusterCore
import CNetlink
import DBusKit
import Dispatch
import Glibc

public struct ProbeAnswer: Sendable, Equatable {
    /// Something answered for the address.
    public var answered: Bool
    /// Its MAC address ("aa:bb:…"), when it answered.
    public var mac: String
}

public enum ARPProbe {
    /// Probes `address` on its interface and waits up to `wait` for an answer. Blocking:
    /// run it off the event loop. IPv6 addresses are not probed (answered = false).
    public static func probe(_ address: FloatingAddress, wait: Duration) throws(NetlinkError) -> ProbeAnswer {
        guard case .v4 = address.address else { return ProbeAnswer(answered: false, mac: "") }
        let operation = "probe \(address.address) on \(address.interface)"
        // Protocol 0 here, ETH_P_ARP at bind: a socket opened with a protocol hooks into every
        // interface at once, and binding it re-hooks, which waits for an RCU grace period
        // (about 8 ms). Closing unhooks and waits for one too (8–20 ms measured), so the close
        // happens off the caller's path: the answer is known by then.
        let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NetlinkError(operation: operation, errno: Glibc.errno) }
        defer { DispatchQueue.global(qos: .utility).async { close(fd) } }
        let (index, mac) = try PacketAnnouncer.ethernetInterface(fd: fd, name: address.interface, operation: operation)
        var link = sockaddr_ll()
        link.sll_family = UInt16(AF_PACKET)
        link.sll_protocol = UInt16(ETH_P_ARP).bigEndian
        link.sll_ifindex = index
        let bound = withUnsafePointer(to: &link) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
        }
        guard bound == 0 else { throw NetlinkError(operation: operation, errno: Glibc.errno) }
        var destination = link
        destination.sll_halen = 6
        destination.sll_addr = (0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0)
        let target = address.address.bytes
        let request = probePacket(mac: mac, target: target)
        let sent = request.withUnsafeBytes { raw in
            withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
        }
        guard sent == request.count else { throw NetlinkError(operation: operation, errno: sent < 0 ? Glibc.errno : EMSGSIZE) }

        let deadline = EventLoop.clockNow + wait
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let left = deadline - EventLoop.clockNow
            guard left > .zero else { return ProbeAnswer(answered: false, mac: "") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let millis = Int32(clamping: max(1, left.wholeMilliseconds))
            let ready = poll(&pfd, 1, millis)
            if ready < 0 {
                if Glibc.errno == EINTR { continue }
                throw NetlinkError(operation: operation, errno: Glibc.errno)
            }
            if ready == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n > 0 else { continue }
            if let sender = answer(Array(buffer[0..<n]), for: target, ownMAC: mac) {
                return ProbeAnswer(answered: true, mac: sender.map { hex($0) }.joined(separator: ":"))
            }
        }
    }

    /// The ARP probe: request, sender MAC ours, sender IP 0.0.0.0, target MAC zero, target IP = the address.
    static func probePacket(mac: [UInt8], target: [UInt8]) -> [UInt8] {
        [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01] + mac + [0, 0, 0, 0] + [UInt8](repeating: 0, count: 6) + target
    }

    /// The sender MAC of an ARP packet that shows someone else uses `target`: any ARP packet
    /// whose sender IP is the address, from another MAC. Nil otherwise (or if malformed).
    static func answer(_ packet: [UInt8], for target: [UInt8], ownMAC: [UInt8]) -> [UInt8]? {
        guard packet.count >= 28, packet[0] == 0, packet[1] == 1, packet[2] == 8, packet[3] == 0,
              packet[4] == 6, packet[5] == 4
        else { return nil }
        let senderMAC = Array(packet[8..<14])
        let senderIP = Array(packet[14..<18])
        guard senderIP == target, senderMAC != ownMAC else { return nil }
        return senderMAC
    }

    static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
}
