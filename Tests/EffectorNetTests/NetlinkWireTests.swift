// The pure parts: message encoding and parsing (including hostile input), packet layouts, errors.
import CNetlink
import ClusterCore
import Glibc
import Testing
@testable import Effector

@Suite("netlink wire format and packet layouts")
struct NetlinkWireTests {
    /// An RTM_NEWADDR message as the kernel would send it in a dump.
    func addressMessage(sequence: UInt32, index: UInt32, address: [UInt8], prefix: UInt8) -> [UInt8] {
        var payload = NetlinkWire.addressHeader(family: UInt8(AF_INET), prefixLength: prefix, flags: 0x80, scope: 0, index: index)
        NetlinkWire.appendAttribute(type: Int(IFA_ADDRESS), value: address, to: &payload)
        NetlinkWire.appendAttribute(type: Int(IFA_LOCAL), value: address, to: &payload)
        NetlinkWire.appendAttribute(type: Int(IFA_LABEL), value: Array("eth0".utf8) + [0], to: &payload)
        return NetlinkWire.message(type: UInt16(RTM_NEWADDR), flags: UInt16(NLM_F_MULTI), sequence: sequence, payload: payload)
    }

    var dump: [UInt8] {
        var done: [UInt8] = []
        NetlinkWire.append(Int32(0), to: &done)
        return addressMessage(sequence: 7, index: 2, address: [198, 18, 0, 1], prefix: 24)
            + addressMessage(sequence: 7, index: 3, address: [198, 18, 0, 100], prefix: 24)
            + NetlinkWire.message(type: UInt16(NLMSG_DONE), flags: UInt16(NLM_F_MULTI), sequence: 7, payload: done)
    }

    @Test func parsesAMultipartDump() throws {
        let messages = try #require(NetlinkWire.parseMessages(dump))
        #expect(messages.count == 3)
        #expect(messages.map(\.sequence) == [7, 7, 7])
        #expect(messages[2].type == UInt16(NLMSG_DONE))
        #expect(NetlinkWire.errorCode(messages[2].payload) == 0)
        let second = try #require(NetlinkWire.parseAddress(messages[1].payload))
        #expect(second.interfaceIndex == 3)
        #expect(second.prefixLength == 24)
        #expect(second.attribute(Int(IFA_LOCAL)) == [198, 18, 0, 100])
        #expect(second.attribute(Int(IFA_LABEL)) == Array("eth0".utf8) + [0])
    }

    @Test func parsesAnErrorAck() throws {
        var payload: [UInt8] = []
        NetlinkWire.append(-EEXIST, to: &payload)
        payload += NetlinkWire.message(type: UInt16(RTM_NEWADDR), flags: 0, sequence: 9, payload: [])
        let bytes = NetlinkWire.message(type: UInt16(NLMSG_ERROR), flags: 0, sequence: 9, payload: payload)
        let messages = try #require(NetlinkWire.parseMessages(bytes))
        #expect(messages.count == 1)
        #expect(NetlinkWire.errorCode(messages[0].payload) == EEXIST)
        #expect(NetlinkWire.errorCode([1, 2]) == nil)
        #expect(NetlinkWire.errorCode([0, 0, 0, 0x80]) == Int32.max)  // Int32.min cannot be negated
    }

    @Test func refusesTruncatedOrLyingHeaders() {
        let bytes = dump
        #expect(NetlinkWire.parseMessages([]) == [])
        for cut in 1..<bytes.count {
            let prefix = Array(bytes[0..<cut])
            // Every cut inside a message is refused; cuts at message boundaries parse.
            if let messages = NetlinkWire.parseMessages(prefix) {
                #expect(messages.count < 3)
            }
        }
        var lying = bytes
        lying[0] = 0xFF; lying[1] = 0xFF  // length far beyond the buffer
        #expect(NetlinkWire.parseMessages(lying) == nil)
        var tooShort = bytes
        tooShort[0] = 8; tooShort[1] = 0; tooShort[2] = 0; tooShort[3] = 0  // shorter than a header
        #expect(NetlinkWire.parseMessages(tooShort) == nil)
        #expect(NetlinkWire.parseAttributes([5, 0, 1, 0][...]) == nil)      // claims 5, has 4
        #expect(NetlinkWire.parseAttributes([2, 0, 1, 0][...]) == nil)      // shorter than its header
        #expect(NetlinkWire.parseAttributes([4, 0, 1, 0, 9][...]) == [NetlinkAttribute(type: 1, value: [])])
        #expect(NetlinkWire.parseAddress([1, 2, 3]) == nil)
        #expect(NetlinkWire.parseLinkIndex(Array(repeating: 0, count: 15)) == nil)
    }

    /// Random, truncated and mutated buffers never trap any parser.
    @Test func fuzzedInputNeverTraps() {
        var generator = SplitMix64(seed: 0x6B75_7375)
        let valid = dump
        var parsed = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0:
                bytes = (0..<Int(generator.next() % 200)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            case 1:
                bytes = Array(valid[0..<Int(generator.next() % UInt64(valid.count + 1))])
            default:
                bytes = valid
                for _ in 0..<(1 + Int(generator.next() % 4)) {
                    bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
            }
            let offset = Int(generator.next() % 5)
            let slice = bytes.count >= offset ? bytes[offset...] : bytes[...]
            if let messages = NetlinkWire.parseMessages(slice) {
                parsed += 1
                for message in messages {
                    _ = NetlinkWire.errorCode(message.payload)
                    _ = NetlinkWire.parseAddress(message.payload)
                    _ = NetlinkWire.parseLinkIndex(message.payload)
                    if message.payload.count > 16 { _ = NetlinkWire.parseAttributes(message.payload[16...]) }
                }
            }
            _ = NetlinkWire.parseAttributes(slice)
            _ = NetlinkWire.parseAddress(Array(slice))
        }
        #expect(parsed > 0)
    }

    @Test func requestEncoding() {
        let bytes = NetlinkWire.message(type: 20, flags: 0x0605, sequence: 0x01020304, payload: [1, 2, 3, 4, 5])
        #expect(bytes.count == 24)  // 16 + 5, padded to 4
        #expect(NetlinkWire.load(UInt32.self, bytes[...], at: 0) == 21)  // length excludes padding
        #expect(NetlinkWire.load(UInt16.self, bytes[...], at: 4) == 20)
        #expect(NetlinkWire.load(UInt16.self, bytes[...], at: 6) == 0x0605)
        #expect(NetlinkWire.load(UInt32.self, bytes[...], at: 8) == 0x01020304)
        var attributes: [UInt8] = []
        NetlinkWire.appendAttribute(type: Int(IFA_LOCAL), value: [198, 18, 0, 100], to: &attributes)
        NetlinkWire.appendAttribute(type: Int(IFLA_IFNAME), value: Array("eth0".utf8) + [0], to: &attributes)
        #expect(attributes.count == 8 + 12)
        #expect(NetlinkWire.parseAttributes(attributes[...])?.map(\.type) == [UInt16(IFA_LOCAL), UInt16(IFLA_IFNAME)])
        #expect(NetlinkWire.load(UInt32.self, [1, 2][...], at: 0) == nil)
        #expect(NetlinkWire.load(UInt32.self, [1, 2, 3, 4][...], at: -1) == nil)
    }

    @Test func broadcastAddresses() {
        #expect(RtnetlinkAddressManager.broadcast([198, 18, 0, 100], prefixLength: 24) == [198, 18, 0, 255])
        #expect(RtnetlinkAddressManager.broadcast([198, 18, 0, 100], prefixLength: 15) == [198, 19, 255, 255])
        #expect(RtnetlinkAddressManager.broadcast([198, 18, 0, 100], prefixLength: 0) == [255, 255, 255, 255])
        #expect(RtnetlinkAddressManager.broadcast([198, 18, 0, 100], prefixLength: 32) == [198, 18, 0, 100])
    }

    @Test func arpAndNeighbourAdvertisementLayouts() {
        let mac: [UInt8] = [2, 0x4B, 0x48, 0, 0, 0x0A]
        let ip: [UInt8] = [198, 18, 0, 100]
        let request = ARPPacket.gratuitous(operation: 1, mac: mac, ip: ip)
        #expect(request == [0, 1, 8, 0, 6, 4, 0, 1] + mac + ip + [0, 0, 0, 0, 0, 0] + ip)
        let reply = ARPPacket.gratuitous(operation: 2, mac: mac, ip: ip)
        #expect(reply == [0, 1, 8, 0, 6, 4, 0, 2] + mac + ip + mac + ip)
        let target = IPAddress("2001:2::100")!.bytes
        let na = NeighbourAdvertisement.unsolicited(target: target, mac: mac)
        #expect(na.count == 32)
        #expect(na == [136, 0, 0, 0, 0x20, 0, 0, 0] + target + [2, 1] + mac)
    }

    @Test func errorsReadAsPlainWords() {
        let error = NetlinkError(operation: "add 198.18.0.100/24 on eth0", errno: EPERM)
        #expect(error.description == "add 198.18.0.100/24 on eth0: Operation not permitted")
        #expect(NetlinkError(operation: "x", errno: ENODEV, message: "no interface named eth9").description
                    == "x: no interface named eth9")
    }
}

/// A small deterministic generator, so a failing fuzz round can be replayed.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49EB_133B_A111
        return z ^ (z >> 31)
    }
}
