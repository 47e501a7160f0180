// RtnetlinkAddressManager and PacketAnnouncer against the real kernel, in throw-away network
// namespaces (root only).
import ClusterCore
import Foundation
import Glibc
import Testing
@testable import Effector

@Suite("floating addresses in network namespaces", .serialized, .enabled(if: runsAsRootWithIP))
struct AddressManagerNetTests {
    let vip4 = FloatingAddress(address: IPAddress("198.18.0.100")!, prefixLength: 24, interface: "vha")
    let vip6 = FloatingAddress(address: IPAddress("2001:2::100")!, prefixLength: 64, interface: "vha")

    @Test func ipv4AddHoldsRemoveIdempotently() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }

        #expect(try manager.holds(vip4) == false)
        #expect(try manager.add(vip4) == true)
        let shown = try run("/usr/sbin/ip", "-n", net.a, "-4", "addr", "show", "dev", "vha")
        #expect(shown.contains("inet 198.18.0.100/24 brd 198.18.0.255 scope global"))
        #expect(try manager.holds(vip4) == true)
        // Same address, other prefix: not what is configured.
        var other = vip4
        other.prefixLength = 25
        #expect(try manager.holds(other) == false)

        #expect(try manager.add(vip4) == false)
        #expect(try manager.holds(vip4) == true)

        #expect(try manager.remove(vip4) == true)
        let after = try run("/usr/sbin/ip", "-n", net.a, "-4", "addr", "show", "dev", "vha")
        #expect(!after.contains("198.18.0.100"))
        #expect(after.contains("198.18.0.1/24"))
        #expect(try manager.holds(vip4) == false)
        #expect(try manager.remove(vip4) == false)
    }

    @Test func ipv4HostPrefixHasNoBroadcast() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }
        let host = FloatingAddress(address: IPAddress("198.18.1.7")!, prefixLength: 32, interface: "vha")
        #expect(try manager.add(host) == true)
        let shown = try run("/usr/sbin/ip", "-n", net.a, "-4", "addr", "show", "dev", "vha")
        #expect(shown.contains("inet 198.18.1.7/32 scope global"))
        #expect(try manager.holds(host) == true)
        #expect(try manager.remove(host) == true)
    }

    @Test func ipv6AddHoldsRemoveIdempotently() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }

        #expect(try manager.add(vip6) == true)
        let shown = try run("/usr/sbin/ip", "-n", net.a, "-6", "addr", "show", "dev", "vha")
        #expect(shown.contains("inet6 2001:2::100/64 scope global"))
        #expect(!shown.contains("tentative"))
        #expect(try manager.holds(vip6) == true)
        #expect(try manager.add(vip6) == false)
        #expect(try manager.remove(vip6) == true)
        let after = try run("/usr/sbin/ip", "-n", net.a, "-6", "addr", "show", "dev", "vha")
        #expect(!after.contains("2001:2::100"))
        #expect(try manager.holds(vip6) == false)
        #expect(try manager.remove(vip6) == false)
    }

    @Test func unknownInterfaceIsAClearError() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }
        var missing = vip4
        missing.interface = "eth9"

        let added = #expect(throws: NetlinkError.self) { try manager.add(missing) }
        #expect(added?.errno == ENODEV)
        #expect(added?.description == "add 198.18.0.100/24 on eth9: no interface named eth9")
        let removed = #expect(throws: NetlinkError.self) { try manager.remove(missing) }
        #expect(removed?.description == "remove 198.18.0.100/24 from eth9: no interface named eth9")
        let held = #expect(throws: NetlinkError.self) { try manager.holds(missing) }
        #expect(held?.errno == ENODEV)
        let announced = #expect(throws: NetlinkError.self) {
            try inNamespace(net.a) { try PacketAnnouncer().announce(missing) }
        }
        #expect(announced?.description == "announce 198.18.0.100 on eth9: no interface named eth9")

        // Names the kernel could never have are refused the same way, without a request.
        missing.interface = String(repeating: "x", count: 40)
        #expect(throws: NetlinkError.self) { try manager.add(missing) }
        missing.interface = ""
        #expect(throws: NetlinkError.self) { try manager.remove(missing) }
    }

    @Test func badPrefixAndNonEthernetAreErrorsNotTraps() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }
        var bad = vip4
        bad.prefixLength = 33
        let error = #expect(throws: NetlinkError.self) { try manager.add(bad) }
        #expect(error?.errno == EINVAL)
        bad.prefixLength = -1
        #expect(throws: NetlinkError.self) { try manager.holds(bad) }

        var loopback = vip4
        loopback.interface = "lo"
        let announced = #expect(throws: NetlinkError.self) {
            try inNamespace(net.a) { try PacketAnnouncer().announce(loopback) }
        }
        #expect(announced?.description == "announce 198.18.0.100 on lo: lo is not an Ethernet interface")
    }

    @Test func holdsReadsAMultiDatagramDumpAndFiltersByInterface() throws {
        let net = try TwoNamespaces()
        defer { net.destroy() }
        // 512 more addresses: the dump no longer fits one datagram.
        var batch = ""
        for third in 2...3 {
            for fourth in 0...255 { batch += "addr add 198.18.\(third).\(fourth)/32 dev vha\n" }
        }
        let file = "\(NSTemporaryDirectory())/khnet-batch-\(getpid())"
        try batch.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        try run("/usr/sbin/ip", "-n", net.a, "-batch", file)

        let manager = try inNamespace(net.a) { try RtnetlinkAddressManager() }
        #expect(try manager.holds(FloatingAddress(address: IPAddress("198.18.3.255")!, prefixLength: 32, interface: "vha")))
        #expect(try manager.holds(FloatingAddress(address: IPAddress("198.18.2.0")!, prefixLength: 32, interface: "vha")))
        #expect(try manager.add(vip4))
        #expect(try manager.holds(vip4))
        var elsewhere = vip4
        elsewhere.interface = "lo"
        #expect(try manager.holds(elsewhere) == false)
        #expect(try manager.holds(FloatingAddress(address: IPAddress("198.18.4.1")!, prefixLength: 32, interface: "vha")) == false)
    }
}
