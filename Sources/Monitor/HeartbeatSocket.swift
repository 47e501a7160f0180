// One UDP socket carrying heartbeats for the links of one address family.
//
// kusu-hbd binds the wildcard address on the heartbeat port (or adopts the
// socket systemd passed it, so that port 694 needs no privilege) and tells the
// links apart by the datagram's source address, which must be the peer's
// address on that link; the authenticated link number inside the packet must
// agree (ClusterCore.PeerTracker checks it).
public import ClusterCore
import Glibc

public struct SocketError: Error, CustomStringConvertible {
    public var operation: String
    public var code: Int32
    public var description: String { "\(operation): \(String(cString: strerror(code)))" }
}

public final class HeartbeatSocket {
    public let fd: Int32
    public let isIPv6: Bool
    /// An IPv6 socket that also carries IPv4 as v4-mapped addresses (systemd's
    /// ListenDatagram=694 gives one of these).
    public let isDualStack: Bool

    /// Opens and binds a non-blocking UDP socket on `port` for one family.
    public init(ipv6: Bool, port: UInt16) throws(SocketError) {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", code: errno) }
        var one: Int32 = 1
        if ipv6 {
            // This socket serves the IPv6 links only; IPv4 links get their own.
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let result = Self.withSocketAddress(ipv6 ? .v6(high: 0, low: 0) : .v4(0, 0, 0, 0), port: port) { bind(fd, $0, $1) }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw SocketError(operation: "bind to UDP port \(port)", code: code)
        }
        self.fd = fd
        self.isIPv6 = ipv6
        self.isDualStack = false
    }

    /// Adopts a socket passed by systemd (kusu-hbd.socket).
    public init(adopting fd: Int32) throws(SocketError) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard ok == 0 else { throw SocketError(operation: "getsockname on the passed socket", code: errno) }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        self.fd = fd
        self.isIPv6 = Int32(storage.ss_family) == AF_INET6
        var v6only: Int32 = 1
        var size = socklen_t(MemoryLayout<Int32>.size)
        if isIPv6, getsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &v6only, &size) == 0 {
            isDualStack = v6only == 0
        } else {
            isDualStack = false
        }
    }

    /// Whether this socket can reach `address`.
    public func carries(_ address: IPAddress) -> Bool {
        address.isIPv4 ? (!isIPv6 || isDualStack) : isIPv6
    }

    deinit { close(fd) }

    /// Sends one datagram; returns the errno on failure (a down link gives ENETUNREACH and the like).
    public func send(_ bytes: [UInt8], to address: IPAddress, port: UInt16) -> Int32? {
        let target = isIPv6 && address.isIPv4 ? IPAddress(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + address.bytes)! : address
        let sent = Self.withSocketAddress(target, port: port) { sa, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT), sa, length) }
        }
        return sent < 0 ? errno : nil
    }

    /// Receives one datagram into `buffer`; nil when none is waiting. Returns the length and the source.
    public func receive(into buffer: inout [UInt8]) -> (count: Int, source: IPAddress?)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT | MSG_TRUNC), $0, &length)
                    }
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                return nil  // EAGAIN, or a transient error (ICMP-reported) that the next read clears
            }
            return (n, Self.address(of: storage))
        }
    }

    static func address(of storage: sockaddr_storage) -> IPAddress? {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                let sin = raw.load(as: sockaddr_in.self)
                let b = withUnsafeBytes(of: sin.sin_addr) { Array($0) }
                return .v4(b[0], b[1], b[2], b[3])
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                let sin6 = raw.load(as: sockaddr_in6.self)
                let b = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
                // A v4-mapped source (::ffff:a.b.c.d) on a dual-stack socket is an IPv4 peer.
                if b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff {
                    return .v4(b[12], b[13], b[14], b[15])
                }
                return IPAddress(bytes: b)
            }
        default:
            return nil
        }
    }

    static func withSocketAddress<R>(_ address: IPAddress, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let bytes = address.bytes
        if bytes.count == 4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: bytes) }
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }
}
