// A small rtnetlink client: one NETLINK_ROUTE socket, requests with sequence numbers and
// NLM_F_ACK, answers read until the matching ack (NLMSG_ERROR) or the end of a dump
// (NLMSG_DONE). Everything the kernel sends is parsed with bounds checks: a malformed
// answer is an error, never a trap.
import CNetlink
import Glibc

/// A failed network operation, in plain words: `add 198.18.0.100/24 on eth0: Operation not permitted`.
public struct NetlinkError: Error, Equatable, CustomStringConvertible {
    /// What was being done: `add 198.18.0.100/24 on eth0`.
    public var operation: String
    /// The errno behind the failure (ENODEV for a missing interface, ETIMEDOUT for no answer, ...).
    public var errno: Int32
    public var description: String

    /// `operation: strerror(errno)`.
    public init(operation: String, errno: Int32) {
        self.init(operation: operation, errno: errno, message: NetlinkError.words(for: errno))
    }

    /// `operation: message`, for failures strerror does not describe well.
    public init(operation: String, errno: Int32, message: String) {
        self.operation = operation
        self.errno = errno
        self.description = "\(operation): \(message)"
    }

    static func words(for code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }
}

/// One netlink message as received: the header fields and the payload after the 16-byte header.
struct NetlinkMessage: Equatable, Sendable {
    var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    var portID: UInt32
    var payload: [UInt8]
}

/// An rtnetlink attribute: its type (without the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits) and value.
struct NetlinkAttribute: Equatable, Sendable {
    var type: UInt16
    var value: [UInt8]
}

/// One RTM_NEWADDR message: `struct ifaddrmsg` and its attributes.
struct AddressMessage: Equatable, Sendable {
    var family: UInt8
    var prefixLength: UInt8
    var flags: UInt8
    var scope: UInt8
    var interfaceIndex: UInt32
    var attributes: [NetlinkAttribute]

    func attribute(_ type: Int) -> [UInt8]? {
        attributes.first { Int($0.type) == type }?.value
    }
}

/// Encoding and decoding of netlink messages (host byte order, 4-byte alignment), reimplementing
/// NLMSG_ALIGN / NLMSG_OK / RTA_OK / RTA_NEXT with explicit bounds checks.
enum NetlinkWire {
    static let headerLength = 16          // sizeof(struct nlmsghdr)
    static let attributeHeaderLength = 4  // sizeof(struct rtattr)
    static let addressHeaderLength = 8    // sizeof(struct ifaddrmsg)
    static let linkHeaderLength = 16      // sizeof(struct ifinfomsg)

    static func align(_ length: Int) -> Int { (length + 3) & ~3 }

    // MARK: encoding

    static func append<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value) { buffer.append(contentsOf: $0) }
    }

    static func appendAttribute(type: Int, value: [UInt8], to buffer: inout [UInt8]) {
        append(UInt16(attributeHeaderLength + value.count), to: &buffer)
        append(UInt16(type), to: &buffer)
        buffer.append(contentsOf: value)
        pad(&buffer)
    }

    static func pad(_ buffer: inout [UInt8]) {
        buffer.append(contentsOf: repeatElement(0, count: align(buffer.count) - buffer.count))
    }

    /// A complete message: header (length filled in) + payload, padded.
    static func message(type: UInt16, flags: UInt16, sequence: UInt32, payload: [UInt8]) -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(headerLength + payload.count + 4)
        append(UInt32(headerLength + payload.count), to: &buffer)
        append(type, to: &buffer)
        append(flags, to: &buffer)
        append(sequence, to: &buffer)
        append(UInt32(0), to: &buffer)
        buffer.append(contentsOf: payload)
        pad(&buffer)
        return buffer
    }

    /// `struct ifaddrmsg`.
    static func addressHeader(family: UInt8, prefixLength: UInt8, flags: UInt8, scope: UInt8, index: UInt32) -> [UInt8] {
        var buffer: [UInt8] = [family, prefixLength, flags, scope]
        append(index, to: &buffer)
        return buffer
    }

    // MARK: decoding

    /// A host-order integer at `offset` in `bytes`, or nil if it does not fit.
    static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: ArraySlice<UInt8>, at offset: Int) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= bytes.count - size else { return nil }
        let start = bytes.startIndex + offset
        return bytes[start..<(start + size)].withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    /// Splits one datagram into messages; nil if any header is short or claims more bytes than
    /// the datagram holds. The last message may omit its padding.
    static func parseMessages(_ datagram: ArraySlice<UInt8>) -> [NetlinkMessage]? {
        var messages: [NetlinkMessage] = []
        var offset = 0
        while offset < datagram.count {
            guard let length32 = load(UInt32.self, datagram, at: offset),
                  let type = load(UInt16.self, datagram, at: offset + 4),
                  let flags = load(UInt16.self, datagram, at: offset + 6),
                  let sequence = load(UInt32.self, datagram, at: offset + 8),
                  let portID = load(UInt32.self, datagram, at: offset + 12) else { return nil }
            let length = Int(length32)
            guard length >= headerLength, length <= datagram.count - offset else { return nil }
            let start = datagram.startIndex + offset
            messages.append(NetlinkMessage(type: type, flags: flags, sequence: sequence, portID: portID,
                                           payload: Array(datagram[(start + headerLength)..<(start + length)])))
            let next = align(length)
            if next >= datagram.count - offset { break }
            offset += next
        }
        return messages
    }

    static func parseMessages(_ datagram: [UInt8]) -> [NetlinkMessage]? { parseMessages(datagram[...]) }

    /// The attributes in `bytes`; nil if one claims more than is there. Fewer than 4 trailing
    /// bytes are taken as padding.
    static func parseAttributes(_ bytes: ArraySlice<UInt8>) -> [NetlinkAttribute]? {
        var attributes: [NetlinkAttribute] = []
        var offset = 0
        while bytes.count - offset >= attributeHeaderLength {
            guard let length16 = load(UInt16.self, bytes, at: offset),
                  let type = load(UInt16.self, bytes, at: offset + 2) else { return nil }
            let length = Int(length16)
            guard length >= attributeHeaderLength, length <= bytes.count - offset else { return nil }
            let start = bytes.startIndex + offset
            attributes.append(NetlinkAttribute(type: type & 0x3FFF,  // NLA_TYPE_MASK
                                               value: Array(bytes[(start + attributeHeaderLength)..<(start + length)])))
            let next = align(length)
            if next >= bytes.count - offset { break }
            offset += next
        }
        return attributes
    }

    /// The errno carried by an NLMSG_ERROR (0 for an ack) or NLMSG_DONE payload; nil if too short.
    static func errorCode(_ payload: [UInt8]) -> Int32? {
        guard let value = load(Int32.self, payload[...], at: 0) else { return nil }
        return value == Int32.min ? Int32.max : -value
    }

    /// An RTM_NEWADDR payload; nil if malformed.
    static func parseAddress(_ payload: [UInt8]) -> AddressMessage? {
        guard payload.count >= addressHeaderLength,
              let index = load(UInt32.self, payload[...], at: 4),
              let attributes = parseAttributes(payload[addressHeaderLength...]) else { return nil }
        return AddressMessage(family: payload[0], prefixLength: payload[1], flags: payload[2], scope: payload[3],
                              interfaceIndex: index, attributes: attributes)
    }

    /// The interface index in an RTM_NEWLINK payload (`struct ifinfomsg.ifi_index`); nil if malformed.
    static func parseLinkIndex(_ payload: [UInt8]) -> Int32? {
        guard payload.count >= linkHeaderLength else { return nil }
        return load(Int32.self, payload[...], at: 4)
    }
}

/// One NETLINK_ROUTE socket. Requests are synchronous; an answer that does not come within
/// `timeout` fails with ETIMEDOUT instead of blocking the caller's loop.
final class NetlinkSocket {
    private let fd: Int32
    private var sequence: UInt32
    private var receiveBuffer: [UInt8]

    init(timeoutMilliseconds: Int = 2000) throws(NetlinkError) {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        guard fd >= 0 else { throw NetlinkError(operation: "open rtnetlink socket", errno: Glibc.errno) }
        var timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        // Let the kernel filter address dumps by interface (4.20+); harmless where unsupported,
        // since answers are filtered here as well.
        _ = setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, socklen_t(MemoryLayout<Int32>.size))
        self.fd = fd
        self.sequence = UInt32(truncatingIfNeeded: time(nil))
        self.receiveBuffer = [UInt8](repeating: 0, count: 65536)
    }

    deinit { close(fd) }

    /// Sends one request and returns the messages answering it (without the final ack / done).
    /// `dump` requests end at NLMSG_DONE; the others carry NLM_F_ACK and end at the ack.
    /// A negative ack throws with its errno; stale answers to earlier requests are skipped.
    func request(type: Int, flags: Int32 = 0, payload: [UInt8], dump: Bool = false,
                 operation: String) throws(NetlinkError) -> [NetlinkMessage] {
        sequence &+= 1
        let seq = sequence
        var allFlags = Int32(NLM_F_REQUEST) | flags
        allFlags |= dump ? Int32(NLM_F_DUMP) : Int32(NLM_F_ACK)
        let bytes = NetlinkWire.message(type: UInt16(type), flags: UInt16(truncatingIfNeeded: allFlags),
                                        sequence: seq, payload: payload)
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        let sent = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &kernel) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                }
            }
        }
        guard sent == bytes.count else {
            throw NetlinkError(operation: operation, errno: sent < 0 ? Glibc.errno : EMSGSIZE)
        }

        var answers: [NetlinkMessage] = []
        while true {
            let datagram = try receive(operation: operation)
            guard let messages = NetlinkWire.parseMessages(datagram) else {
                throw NetlinkError(operation: operation, errno: EBADMSG, message: "malformed answer from the kernel")
            }
            for message in messages where message.sequence == seq {
                switch Int32(message.type) {
                case NLMSG_NOOP:
                    continue
                case NLMSG_ERROR, NLMSG_DONE:
                    guard let code = NetlinkWire.errorCode(message.payload) else {
                        if Int32(message.type) == NLMSG_DONE { return answers }
                        throw NetlinkError(operation: operation, errno: EBADMSG, message: "malformed answer from the kernel")
                    }
                    if code != 0 { throw NetlinkError(operation: operation, errno: code) }
                    return answers
                default:
                    answers.append(message)
                }
            }
        }
    }

    /// One datagram from the kernel (other senders are ignored).
    private func receive(operation: String) throws(NetlinkError) -> ArraySlice<UInt8> {
        while true {
            var from = sockaddr_nl()
            var fromLength = socklen_t(MemoryLayout<sockaddr_nl>.size)
            let capacity = receiveBuffer.count
            let received = receiveBuffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, raw.baseAddress, capacity, Int32(MSG_TRUNC), $0, &fromLength)
                    }
                }
            }
            if received < 0 {
                let code = Glibc.errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK {
                    throw NetlinkError(operation: operation, errno: ETIMEDOUT, message: "no answer from the kernel")
                }
                throw NetlinkError(operation: operation, errno: code)
            }
            if received > capacity {
                throw NetlinkError(operation: operation, errno: EMSGSIZE, message: "answer from the kernel too large")
            }
            if from.nl_pid != 0 { continue }
            return receiveBuffer[0..<received]
        }
    }
}
