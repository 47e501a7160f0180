import ClusterCore
import Testing

@Suite struct HeartbeatCodecTests {
    let sample = Heartbeat(
        role: .active, link: 1, autoFailover: true, maintenance: true, generation: 0x0102_0304_0506_0708,
        sequence: 9, epoch: 3, lsn: 0x16_B374_D848, sentAt: 1_700_000_000_123_456, cluster: "kusu", node: "installer"
    )

    @Test func layout() {
        let packet = HeartbeatCodec.encode(sample, key: testKey)
        #expect(packet.count == 52 + 1 + 4 + 1 + 9 + 2 + 32)
        #expect(Array(packet[0..<4]) == Array("KUHB".utf8))
        #expect(packet[4] == 1)  // version
        #expect(packet[5] == 1)  // kind
        #expect(packet[6] == 3)  // role: active
        #expect(packet[7] == 1)  // link
        #expect(Array(packet[8..<12]) == [0, 3, 0, 0])  // flags, reserved
        #expect(Array(packet[12..<20]) == [1, 2, 3, 4, 5, 6, 7, 8])  // generation, big-endian
        #expect(Array(packet[20..<28]) == [0, 0, 0, 0, 0, 0, 0, 9])
        #expect(packet[52] == 4)
        #expect(Array(packet[53..<57]) == Array("kusu".utf8))
        #expect(packet[57] == 9)
        #expect(Array(packet[67..<69]) == [0, 0])  // extension length
    }

    /// Cross-checked with Python: hmac.new(key, body, hashlib.sha256).hexdigest().
    @Test func macMatchesAnIndependentImplementation() {
        let packet = HeartbeatCodec.encode(sample, key: testKey)
        let mac = packet.suffix(32).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
        #expect(mac.joined() == goldenMAC)
    }

    @Test func roundTrip() {
        let packet = HeartbeatCodec.encode(sample, key: testKey)
        #expect(HeartbeatCodec.decode(packet, key: testKey) == .success(sample))
        // An extension record of a type this version does not know is skipped.
        let withExtension = HeartbeatCodec.encode(sample, key: testKey, extension: [0xEE, 0, 2, 4, 5])
        #expect(HeartbeatCodec.decode(withExtension, key: testKey) == .success(sample))
        #expect(withExtension.count == packet.count + 5)
    }

    @Test func randomRoundTrips() {
        var rng = SplitMix64(seed: 1)
        for _ in 0..<5000 {
            let heartbeat = randomHeartbeat(using: &rng)
            #expect(HeartbeatCodec.decode(HeartbeatCodec.encode(heartbeat, key: testKey), key: testKey) == .success(heartbeat))
        }
    }

    @Test func rejections() {
        let packet = HeartbeatCodec.encode(sample, key: testKey)
        #expect(HeartbeatCodec.decode(packet, key: otherKey) == .failure(.badSignature))
        #expect(HeartbeatCodec.decode([], key: testKey) == .failure(.truncated))
        #expect(HeartbeatCodec.decode(Array("KU".utf8), key: testKey) == .failure(.truncated))
        #expect(HeartbeatCodec.decode(Array("XY".utf8), key: testKey) == .failure(.badMagic))
        var badMagic = packet
        badMagic[0] = UInt8(ascii: "k")
        #expect(HeartbeatCodec.decode(badMagic, key: testKey) == .failure(.badMagic))
        var version = packet
        version[4] = 2
        #expect(HeartbeatCodec.decode(version, key: testKey) == .failure(.unsupportedVersion))
        var kind = packet
        kind[5] = 2
        #expect(HeartbeatCodec.decode(kind, key: testKey) == .failure(.unsupportedKind))
        #expect(HeartbeatCodec.decode(packet + [0], key: testKey) == .failure(.malformed))
        #expect(HeartbeatCodec.decode(packet + [UInt8](repeating: 0, count: 2000), key: testKey) == .failure(.malformed))
        for length in 0..<packet.count {
            #expect(HeartbeatCodec.decode(Array(packet.prefix(length)), key: testKey) == .failure(.truncated))
        }
    }

    /// Signed packets with bad contents: authentic but malformed.
    /// A key holder's absurd counters: signed, but refused before anything is persisted or
    /// computed with them (no trap at the next takeover, no peer refused forever).
    @Test func countersAboveTheBoundAreRefused() {
        for field in 0..<3 {
            var heartbeat = sample
            switch field {
            case 0: heartbeat.generation = Heartbeat.maximumCounter + 1
            case 1: heartbeat.sequence = UInt64.max
            default: heartbeat.epoch = UInt64.max
            }
            #expect(HeartbeatCodec.decode(HeartbeatCodec.encode(heartbeat, key: testKey), key: testKey) == .failure(.outOfRange))
        }
        var atTheBound = sample
        atTheBound.generation = Heartbeat.maximumCounter
        atTheBound.epoch = Heartbeat.maximumCounter
        #expect(HeartbeatCodec.decode(HeartbeatCodec.encode(atTheBound, key: testKey), key: testKey) == .success(atTheBound))
        // The next takeover's epoch stays within the bound (no overflow, no packet the peer refuses).
        var machine = RoleMachine(epoch: Heartbeat.maximumCounter)
        _ = machine.beginTakeover(peerEpoch: Heartbeat.maximumCounter, reason: "peer dead")
        #expect(machine.epoch == Heartbeat.maximumCounter)
        var fresh = RoleMachine(epoch: 3)
        _ = fresh.beginTakeover(peerEpoch: 7, reason: "peer dead")
        #expect(fresh.epoch == 8)
    }

    @Test func signedButMalformed() {
        let body = Array(HeartbeatCodec.encode(sample, key: testKey).dropLast(32))
        func signed(_ change: (inout [UInt8]) -> Void) -> Result<Heartbeat, PacketRejection> {
            var copy = body
            change(&copy)
            return HeartbeatCodec.decode(HeartbeatCodec.seal(copy, key: testKey), key: testKey)
        }
        #expect(signed { _ in } == .success(sample))
        #expect(signed { $0[6] = 0 } == .failure(.malformed))  // role 0
        #expect(signed { $0[6] = 6 } == .failure(.malformed))  // role 6
        #expect(signed { $0[53] = 0xFF } == .failure(.malformed))  // invalid UTF-8 in the cluster name
        #expect(signed { $0[53] = 0x0A } == .failure(.malformed))  // a control character
        #expect(signed { $0[8] = 0xFF; $0[10] = 0xAB } != .failure(.malformed))  // unknown flags, reserved: ignored
        // An empty node name.
        let empty = Array(body[0..<57]) + [0, 0, 0]
        #expect(HeartbeatCodec.decode(HeartbeatCodec.seal(empty, key: testKey), key: testKey) == .failure(.malformed))
        // A 65-byte node name.
        let long = Array(body[0..<57]) + [65] + [UInt8](repeating: 0x61, count: 65) + [0, 0]
        #expect(HeartbeatCodec.decode(HeartbeatCodec.seal(long, key: testKey), key: testKey) == .failure(.malformed))
    }

    @Test func keys() {
        #expect(HeartbeatKey(Array(repeating: 1, count: 15)) == nil)
        #expect(HeartbeatKey(Array(repeating: 1, count: 16)) != nil)
        #expect(HeartbeatCodec.minimumSize == 88)
        #expect(HeartbeatCodec.maximumSize >= HeartbeatCodec.minimumSize + 128)
    }
}

func randomHeartbeat(using rng: inout SplitMix64) -> Heartbeat {
    func name() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-_.é€")
        let length = Int.random(in: 1...16, using: &rng)
        return String((0..<length).map { _ in alphabet.randomElement(using: &rng)! })
    }
    return Heartbeat(
        role: NodeRole.allCases.randomElement(using: &rng)!, link: UInt8.random(in: 0...7, using: &rng),
        autoFailover: Bool.random(using: &rng), maintenance: Bool.random(using: &rng),
        generation: rng.next() % (Heartbeat.maximumCounter + 1), sequence: rng.next() % (Heartbeat.maximumCounter + 1),
        epoch: rng.next() % (Heartbeat.maximumCounter + 1), lsn: rng.next(), sentAt: rng.next(),
        cluster: name(), node: name()
    )
}
let goldenMAC = "1b2d110982a4011b1a3ef709cd9583780850424f9c1834b9cbf22bd0cabe1a16"

@Suite struct HandoverFlags {
    @Test func switchoverFlagsRoundTripAndAreSigned() throws {
        let key = try #require(HeartbeatKey(Array(repeating: 7, count: 32)))
        for (handover, request) in [(false, false), (true, false), (false, true), (true, true)] {
            let heartbeat = Heartbeat(
                role: .releasing, link: 0, autoFailover: true, maintenance: false, generation: 5, sequence: 9, epoch: 3,
                lsn: 0x16_B374_D848, sentAt: 1, cluster: "kusu", node: "installer", handover: handover, switchoverRequested: request)
            let decoded = try HeartbeatCodec.decode(HeartbeatCodec.encode(heartbeat, key: key), key: key).get()
            #expect(decoded == heartbeat)
        }
    }

    @Test func synchronousFlagRoundTripsAndIsBitFour() throws {
        let key = try #require(HeartbeatKey(Array(repeating: 7, count: 32)))
        for synchronous in [false, true] {
            let heartbeat = Heartbeat(
                role: .active, link: 0, autoFailover: false, maintenance: false, generation: 5, sequence: 9, epoch: 3,
                lsn: 1, sentAt: 1, cluster: "kusu", node: "installer", synchronous: synchronous)
            let packet = HeartbeatCodec.encode(heartbeat, key: key)
            #expect(packet[9] == (synchronous ? 0x10 : 0))
            #expect(try HeartbeatCodec.decode(packet, key: key).get() == heartbeat)
        }
    }

    @Test func tieBreakerFlagRoundTripsAndIsBitFive() throws {
        let key = try #require(HeartbeatKey(Array(repeating: 7, count: 32)))
        for reaches in [false, true] {
            let heartbeat = Heartbeat(
                role: .standby, link: 1, autoFailover: false, maintenance: false, generation: 5, sequence: 9, epoch: 3,
                lsn: 1, sentAt: 1, cluster: "kusu", node: "failover", synchronous: true, reachesTieBreaker: reaches)
            let packet = HeartbeatCodec.encode(heartbeat, key: key)
            #expect(packet[9] == (reaches ? 0x30 : 0x10))
            #expect(try HeartbeatCodec.decode(packet, key: key).get() == heartbeat)
        }
    }
}
