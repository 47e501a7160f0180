// PacketAnnouncer on the wire: B's neighbour cache learns A's MAC for the floating address,
// and the frames B receives have the right fields.
import ClusterCore
import Foundation
import Glibc
import Testing
@testable import Effector

@Suite("announcements in network namespaces", .serialized, .enabled(if: runsAsRootWithIP))
struct AnnouncerNetTests {
    @Test func gratuitousARPUpdatesThePeerAndHasBothForms() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        let vip = FloatingAddress(address: IPAddress("198.18.0.100")!, prefixLength: 24, interface: net.interfaceA)
        let wrongMAC = "02:00:00:00:00:99"
        try run("/usr/sbin/ip", "-n", net.b, "neigh", "replace", "198.18.0.100", "lladdr", wrongMAC,
                "dev", net.interfaceB, "nud", "stale")
        #expect(try run("/usr/sbin/ip", "-n", net.b, "neigh", "show", "198.18.0.100").contains(wrongMAC))

        let capture = try inNamespace(net.b) { try openCapture(interface: net.interfaceB, etherType: 0x0806) }
        defer { close(capture) }
        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }
        #expect(try manager.add(vip))
        try inNamespace(net.a) { try PacketAnnouncer().announce(vip) }

        let updated = try eventually {
            try run("/usr/sbin/ip", "-n", net.b, "neigh", "show", "198.18.0.100", "dev", net.interfaceB)
                .contains("lladdr \(net.macA)")
        }
        #expect(updated, "B's neighbour entry for the VIP never pointed at A's MAC")

        let macA = macBytes(net.macA)
        let ip: [UInt8] = [198, 18, 0, 100]
        func arpFrames(_ frames: [[UInt8]]) -> [[UInt8]] {
            frames.filter { $0.count >= 42 && $0[12] == 0x08 && $0[13] == 0x06 && Array($0[28..<32]) == ip }
        }
        let frames = arpFrames(captureFrames(capture) { arpFrames($0).count >= 2 })
        let request = frames.first { $0[20] == 0 && $0[21] == 1 }
        let reply = frames.first { $0[20] == 0 && $0[21] == 2 }
        for frame in [request, reply] {
            guard let frame else { Issue.record("missing ARP frame; got \(frames)"); continue }
            #expect(Array(frame[0..<6]) == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  // broadcast
            #expect(Array(frame[6..<12]) == macA)                                // Ethernet source
            #expect(Array(frame[14..<20]) == [0, 1, 0x08, 0x00, 6, 4])          // Ethernet/IPv4
            #expect(Array(frame[22..<28]) == macA)                               // sender MAC
            #expect(Array(frame[28..<32]) == ip)                                 // sender IP
            #expect(Array(frame[38..<42]) == ip)                                 // target IP
        }
        if let request { #expect(Array(request[32..<38]) == [0, 0, 0, 0, 0, 0]) }
        if let reply { #expect(Array(reply[32..<38]) == macA) }
    }

    @Test func unsolicitedNeighbourAdvertisementUpdatesThePeer() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        let vip = FloatingAddress(address: IPAddress("2001:2::100")!, prefixLength: 64, interface: net.interfaceA)
        let wrongMAC = "02:00:00:00:00:99"
        try run("/usr/sbin/ip", "-n", net.b, "-6", "neigh", "replace", "2001:2::100", "lladdr", wrongMAC,
                "dev", net.interfaceB, "nud", "stale")

        let capture = try inNamespace(net.b) { try openCapture(interface: net.interfaceB, etherType: 0x86DD) }
        defer { close(capture) }
        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }
        #expect(try manager.add(vip))
        try inNamespace(net.a) { try PacketAnnouncer().announce(vip) }

        let updated = try eventually {
            try run("/usr/sbin/ip", "-n", net.b, "-6", "neigh", "show", "2001:2::100", "dev", net.interfaceB)
                .contains("lladdr \(net.macA)")
        }
        #expect(updated, "B's neighbour entry for the VIP never pointed at A's MAC")

        let macA = macBytes(net.macA)
        let target = IPAddress("2001:2::100")!.bytes
        // Ethernet 14 + IPv6 40 + NA 24 + option 8.
        func advertisements(_ frames: [[UInt8]]) -> [[UInt8]] {
            frames.filter { $0.count >= 86 && $0[20] == 58 && $0[54] == 136 && Array($0[62..<78]) == target }
        }
        let frames = advertisements(captureFrames(capture) { !advertisements($0).isEmpty })
        guard let na = frames.first else { Issue.record("no neighbour advertisement captured"); return }
        #expect(Array(na[0..<6]) == [0x33, 0x33, 0, 0, 0, 1])                   // to all nodes
        #expect(Array(na[6..<12]) == macA)
        #expect(na[21] == 255)                                                  // hop limit
        #expect(Array(na[38..<54]) == NeighbourAdvertisement.allNodes)          // IPv6 destination
        #expect(na[55] == 0)                                                    // code
        #expect(na[56] != 0 || na[57] != 0)                                     // checksum filled in
        #expect(na[58] == 0x20)                                                 // override only
        #expect(Array(na[78..<80]) == [2, 1])                                   // target link-layer option
        #expect(Array(na[80..<86]) == macA)
    }
}
