import ClusterCore
import Testing

@Suite struct TimeTests {
    @Test func arithmetic() {
        let a = MonotonicInstant(.seconds(5))
        #expect(a + .milliseconds(250) == MonotonicInstant(.milliseconds(5250)))
        #expect(a - .seconds(1) == MonotonicInstant(.seconds(4)))
        #expect(MonotonicInstant(.seconds(7)) - a == .seconds(2))
        #expect(a < a + .nanoseconds(1))
        #expect(MonotonicInstant.origin == MonotonicInstant(.zero))
    }

    @Test func roleWireCodes() {
        #expect(NodeRole.allCases.map(\.wireCode) == [1, 2, 3, 4, 5])
        for role in NodeRole.allCases { #expect(NodeRole(wireCode: role.wireCode) == role) }
        #expect(NodeRole(wireCode: 0) == nil)
        #expect(NodeRole(wireCode: 6) == nil)
        #expect(NodeRole.takingOver.rawValue == "taking-over")
        #expect(PeerState.allCases.map(\.rawValue) == ["unknown", "alive", "late", "dead"])
    }
}

@Suite struct IPAddressTests {
    @Test(arguments: [
        ("198.18.0.11", [198, 18, 0, 11] as [UInt8]),
        ("0.0.0.0", [0, 0, 0, 0]),
        ("255.255.255.255", [255, 255, 255, 255]),
    ])
    func validIPv4(text: String, bytes: [UInt8]) {
        let address = IPAddress(text)
        #expect(address?.bytes == bytes)
        #expect(address?.isIPv4 == true)
        #expect(address?.description == text)
    }

    @Test(arguments: [
        "", "1", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.04", "1..3.4", "1.2.3.4 ", " 1.2.3.4",
        "1.2.3.-4", "+1.2.3.4", "1.2.3.4/24", "1.2.3.a", "1234.1.1.1", "0x1.2.3.4",
        ":", ":::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::1", "g::1", ":1::2", "1::2:",
        "fe80::1%eth0", "::1.2.3", "::1.2.3.256", "1:2:3:4:5:6:7:1.2.3.4", "[::1]", "::ffff:01.2.3.4",
    ])
    func invalid(text: String) {
        #expect(IPAddress(text) == nil, "\(text)")
    }

    @Test(arguments: [
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("FD00:0:0:0:0:0:0:12", "fd00::12"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8::0:1", "2001:db8::1"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
        ("1::2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:85a3::8a2e:370:7334"),
    ])
    func validIPv6(text: String, canonical: String) throws {
        let address = try #require(IPAddress(text))
        #expect(!address.isIPv4)
        #expect(address.description == canonical)
        #expect(IPAddress(canonical) == address)
        #expect(address.bytes.count == 16)
        #expect(IPAddress(bytes: address.bytes) == address)
    }

    @Test func bytesRoundTrip() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<2000 {
            let count = Bool.random(using: &rng) ? 4 : 16
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let address = IPAddress(bytes: bytes)
            #expect(address?.bytes == bytes)
            #expect(IPAddress(address!.description) == address)
        }
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress("0.0.0.0")?.isUnspecified == true)
        #expect(IPAddress("::")?.isUnspecified == true)
        #expect(IPAddress("::1")?.isUnspecified == false)
    }
}
