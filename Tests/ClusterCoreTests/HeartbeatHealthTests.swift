import ClusterCore
import Testing

/// The heartbeat's health fields: the `serviceReady` flag (bit 6 of the flags word at offset 8)
/// and the given-up resources, carried in the extension as a record of type 1.
@Suite struct HeartbeatHealthTests {
    static let sample = Heartbeat(
        role: .active, link: 1, autoFailover: true, maintenance: true, generation: 0x0102_0304_0506_0708,
        sequence: 9, epoch: 3, lsn: 0x16_B374_D848, sentAt: 1_700_000_000_123_456, cluster: "kusu", node: "installer"
    )

    /// Offset of the extension length in `sample`'s packet: 52 + 1 + 4 ("kusu") + 1 + 9 ("installer").
    static let extensionOffset = 67

    static func with(serviceReady: Bool = false, gaveUp: [String] = []) -> Heartbeat {
        var heartbeat = sample
        heartbeat.serviceReady = serviceReady
        heartbeat.gaveUp = gaveUp
        return heartbeat
    }

    static let sixteen = (0..<16).map { "unit-\($0).service" }

    /// `sample`'s body with `extension` in place of its empty one, signed with the test key.
    static func sealed(extension bytes: [UInt8]) -> [UInt8] {
        var body = Array(HeartbeatCodec.encode(sample, key: testKey).dropLast(HeartbeatCodec.macSize))
        precondition(Array(body.suffix(2)) == [0, 0])
        body.removeLast(2)
        body += [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
        return HeartbeatCodec.seal(body, key: testKey)
    }

    /// A record: type, big-endian u16 length, value.
    static func record(_ type: UInt8, _ value: [UInt8]) -> [UInt8] {
        [type, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
    }

    /// A given-up list's value: each name as u8 length + bytes.
    static func names(_ names: [[UInt8]]) -> [UInt8] {
        names.flatMap { [UInt8($0.count)] + $0 }
    }

    static func names(_ names: [String]) -> [UInt8] { Self.names(names.map { Array($0.utf8) }) }

    // MARK: - Round trips

    @Test(arguments: [false, true], [0, 1, 16])
    func roundTrip(serviceReady: Bool, count: Int) throws {
        let heartbeat = Self.with(serviceReady: serviceReady, gaveUp: Array(Self.sixteen.prefix(count)))
        let packet = HeartbeatCodec.encode(heartbeat, key: testKey)
        let decoded = try HeartbeatCodec.decode(packet, key: testKey).get()
        #expect(decoded == heartbeat)
        #expect(decoded.serviceReady == serviceReady)
        #expect(decoded.gaveUp.count == count)
    }

    @Test func serviceReadyIsBitSix() throws {
        for ready in [false, true] {
            var heartbeat = Self.with(serviceReady: ready)
            heartbeat.autoFailover = false
            heartbeat.maintenance = false
            let packet = HeartbeatCodec.encode(heartbeat, key: testKey)
            #expect(packet[8] == 0)
            #expect(packet[9] == (ready ? 0x40 : 0))
            #expect(try HeartbeatCodec.decode(packet, key: testKey).get().serviceReady == ready)
        }
        // With the other flags of the sample (auto-failover, maintenance): 0x03 | 0x40.
        #expect(HeartbeatCodec.encode(Self.with(serviceReady: true), key: testKey)[9] == 0x43)
    }

    /// A node with nothing given up sends byte for byte the version-1 packet of the layout test
    /// in HeartbeatCodecTests (same length, empty extension, same MAC).
    @Test func emptyGaveUpEncodesAsBefore() {
        let packet = HeartbeatCodec.encode(Self.with(serviceReady: false, gaveUp: []), key: testKey)
        #expect(packet.count == 52 + 1 + 4 + 1 + 9 + 2 + 32)
        #expect(Array(packet[Self.extensionOffset..<(Self.extensionOffset + 2)]) == [0, 0])
        let mac = packet.suffix(32).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(mac == goldenMAC)
        #expect(packet == HeartbeatCodec.encode(Self.sample, key: testKey))
    }

    @Test func gaveUpRecordLayout() {
        let packet = HeartbeatCodec.encode(Self.with(gaveUp: ["a.service", "db"]), key: testKey)
        let x = Self.extensionOffset
        // Extension: 3 (record header) + (1 + 9) + (1 + 2) = 16 bytes.
        #expect(Array(packet[x..<(x + 2)]) == [0, 16])
        #expect(Array(packet[(x + 2)..<(x + 2 + 16)]) == [1, 0, 13, 9] + Array("a.service".utf8) + [2] + Array("db".utf8))
        #expect(packet.count == 52 + 1 + 4 + 1 + 9 + 2 + 16 + 32)
    }

    @Test func moreThanTheMaximumAreCutOnEncode() throws {
        #expect(HeartbeatCodec.maximumGivenUp == 16)
        let many = (0..<40).map { "r\($0)" }
        let packet = HeartbeatCodec.encode(Self.with(gaveUp: many), key: testKey)
        let decoded = try HeartbeatCodec.decode(packet, key: testKey).get()
        #expect(decoded.gaveUp == Array(many.prefix(16)))
        let seventeen = HeartbeatCodec.encode(Self.with(gaveUp: Self.sixteen + ["extra.service"]), key: testKey)
        #expect(try HeartbeatCodec.decode(seventeen, key: testKey).get().gaveUp == Self.sixteen)
    }

    /// Sixteen names of 64 bytes from a node with short names still fit a packet.
    @Test func sixteenLongestNamesFit() throws {
        let longest = (0..<16).map { String(repeating: Character(UnicodeScalar(UInt8(ascii: "a") + UInt8($0))), count: 64) }
        let heartbeat = Self.with(serviceReady: true, gaveUp: longest)
        let packet = HeartbeatCodec.encode(heartbeat, key: testKey)
        #expect(packet.count <= HeartbeatCodec.maximumSize)
        #expect(try HeartbeatCodec.decode(packet, key: testKey).get() == heartbeat)
    }

    /// The largest heartbeat the configuration allows, 64-byte cluster and node names and 16
    /// given-up resources of 64 bytes: the encoder sends as many names as fit `maximumSize`
    /// (15 here), in order, and the packet decodes.
    @Test func theLargestHeartbeatIsCutToFitTheMaximumSize() throws {
        let names = (0..<16).map { "u\($0)." + String(repeating: "u", count: 64 - 2 - "\($0)".count) }
        let heartbeat = Heartbeat(
            role: .active, link: 0, autoFailover: true, maintenance: false, generation: 1, sequence: 1, epoch: 1,
            lsn: 1, sentAt: 1, cluster: String(repeating: "c", count: 64), node: String(repeating: "n", count: 64),
            serviceReady: false, gaveUp: names)
        let packet = HeartbeatCodec.encode(heartbeat, key: testKey)
        #expect(packet.count <= HeartbeatCodec.maximumSize)
        #expect(try HeartbeatCodec.decode(packet, key: testKey).get().gaveUp == Array(names.prefix(15)))
    }

    /// The same, as the daemon would meet it: `encode` must not trap.
    @Test func encodingTheLargestHeartbeatDoesNotTrap() async {
        await #expect(processExitsWith: .success) {
            let key = HeartbeatKey(Array("0123456789abcdef0123456789abcdef".utf8))!
            let heartbeat = Heartbeat(
                role: .active, link: 0, autoFailover: true, maintenance: false, generation: 1, sequence: 1, epoch: 1,
                lsn: 1, sentAt: 1, cluster: String(repeating: "c", count: 64), node: String(repeating: "n", count: 64),
                serviceReady: false, gaveUp: (0..<16).map { "u\($0)." + String(repeating: "u", count: 64 - 2 - "\($0)".count) })
            _ = HeartbeatCodec.encode(heartbeat, key: key)
        }
    }

    // MARK: - Unknown records

    @Test func unknownRecordsAreSkipped() throws {
        let gaveUp = Self.with(gaveUp: ["nginx.service"])
        // After the given-up record, through encode's extension parameter.
        let after = HeartbeatCodec.encode(gaveUp, key: testKey, extension: Self.record(0xEE, [1, 2, 3, 4]))
        #expect(try HeartbeatCodec.decode(after, key: testKey).get() == gaveUp)
        // Alone, with an empty given-up list.
        let alone = HeartbeatCodec.encode(Self.sample, key: testKey, extension: Self.record(0xEE, [0xFF, 0x00]))
        #expect(try HeartbeatCodec.decode(alone, key: testKey).get() == Self.sample)
        // Of length 0, and of type 0 and 0xFF.
        let empties = HeartbeatCodec.encode(Self.sample, key: testKey, extension: Self.record(0, []) + Self.record(0xFF, []))
        #expect(try HeartbeatCodec.decode(empties, key: testKey).get() == Self.sample)
        // Before the given-up record, and between two unknown ones.
        let crafted = Self.sealed(
            extension: Self.record(3, Array("future".utf8)) + Self.record(1, Self.names(["nginx.service"])) + Self.record(0x80, [0]))
        #expect(try HeartbeatCodec.decode(crafted, key: testKey).get() == gaveUp)
        // An unknown record may hold bytes that would be invalid in a given-up list.
        let odd = Self.sealed(extension: Self.record(0xEE, Self.names([[0x20, 0x00, 0xFF]]) + [0, 0, 0xFF]))
        #expect(try HeartbeatCodec.decode(odd, key: testKey).get() == Self.sample)
    }

    // MARK: - Malformed records, correctly signed

    static let malformedExtensions: [(String, [UInt8])] = [
        ("record length overruns the extension", [1, 0, 10] + Array("abc".utf8)),
        ("unknown record's length overruns the extension", [0xEE, 0, 9, 1, 2]),
        ("record length 0xFFFF", [1, 0xFF, 0xFF, 1, 0x61]),
        ("record header cut after the type", [1]),
        ("record header cut inside the length", [0xEE, 0]),
        ("a good record then a cut one", record(1, names(["a"])) + [1, 0]),
        ("name length overruns the record", record(1, [5] + Array("abc".utf8))),
        ("second name overruns the record", record(1, names(["a"]) + [3, 0x62])),
        ("empty name", record(1, [0])),
        ("empty name after a good one", record(1, names(["a"]) + [0])),
        ("name with a space", record(1, names(["nginx service"]))),
        ("name with a control character", record(1, names([[0x61, 0x01, 0x62]]))),
        ("name with a newline", record(1, names([[0x61, 0x0A]]))),
        ("name with DEL", record(1, names([[0x61, 0x7F]]))),
        ("name with a NUL", record(1, names([[0x61, 0x00]]))),
        ("name with invalid UTF-8", record(1, names([[0x61, 0xC3, 0x28]]))),
        ("name of a lone continuation byte", record(1, names([[0x80]]))),
        ("name with valid non-ASCII UTF-8", record(1, names(["dépôt"]))),
        ("name with a slash", record(1, names(["a/b"]))),
        ("name of 65 bytes", record(1, names([String(repeating: "a", count: 65)]))),
        ("17 names", record(1, names((0..<17).map { "n\($0)" }))),
        ("17 names in two records", record(1, names((0..<9).map { "n\($0)" })) + record(1, names((9..<17).map { "n\($0)" }))),
    ]

    @Test(arguments: malformedExtensions)
    func malformedButSigned(name: String, extension bytes: [UInt8]) {
        #expect(HeartbeatCodec.decode(Self.sealed(extension: bytes), key: testKey) == .failure(.malformed), "\(name)")
    }

    /// The edges of the malformed cases are accepted: 16 names, 64 bytes, a valid crafted record.
    @Test func wellFormedEdges() throws {
        let sixteen = Self.sealed(extension: Self.record(1, Self.names((0..<16).map { "n\($0)" })))
        #expect(try HeartbeatCodec.decode(sixteen, key: testKey).get().gaveUp == (0..<16).map { "n\($0)" })
        let long = String(repeating: "a", count: 64)
        let longest = Self.sealed(extension: Self.record(1, Self.names([long])))
        #expect(try HeartbeatCodec.decode(longest, key: testKey).get().gaveUp == [long])
        let every = "Az09._-@:\\"
        let characters = Self.sealed(extension: Self.record(1, Self.names([every])))
        #expect(try HeartbeatCodec.decode(characters, key: testKey).get().gaveUp == [every])
    }

    /// The extension is covered by the MAC: a changed given-up list is a bad signature.
    @Test func gaveUpIsSigned() {
        var packet = HeartbeatCodec.encode(Self.with(gaveUp: ["nginx.service"]), key: testKey)
        packet[Self.extensionOffset + 2 + 3 + 1] ^= 0x20  // "n" → "N"
        #expect(HeartbeatCodec.decode(packet, key: testKey) == .failure(.badSignature))
    }

    /// What encode sends, decode accepts: a name the decoder refuses must not make the whole
    /// heartbeat (and so the node) vanish for its peer.
    @Test func encodeNeverSendsAnUndecodableGaveUpList() {
        for bad in ["nginx service", "dépôt", "a/b", "a\u{1}b"] {
            let heartbeat = Self.with(gaveUp: [bad, "ok.service"])
            let result = HeartbeatCodec.decode(HeartbeatCodec.encode(heartbeat, key: testKey), key: testKey)
            #expect(result != .failure(.malformed), "gaveUp \(heartbeat.gaveUp)")
        }
    }

    // MARK: - Properties

    static let resourceAlphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:\\")

    static func randomName(using rng: inout SplitMix64) -> String {
        let length = Int.random(in: 1...64, using: &rng)
        return String((0..<length).map { _ in resourceAlphabet.randomElement(using: &rng)! })
    }

    /// Random valid given-up lists (0...16 names of 1...64 bytes) round-trip, and longer ones
    /// arrive cut to their first 16.
    @Test func randomGaveUpListsRoundTrip() throws {
        var rng = SplitMix64(seed: 0x6A7E_0F)
        for round in 0..<3000 {
            let count = round % 5 == 0 ? Int.random(in: 17...24, using: &rng) : Int.random(in: 0...16, using: &rng)
            let names = (0..<count).map { _ in Self.randomName(using: &rng) }
            var heartbeat = randomHeartbeat(using: &rng)
            heartbeat.serviceReady = Bool.random(using: &rng)
            heartbeat.reachesTieBreaker = Bool.random(using: &rng)
            heartbeat.synchronous = Bool.random(using: &rng)
            heartbeat.gaveUp = names
            let packet = HeartbeatCodec.encode(heartbeat, key: testKey)
            var expected = heartbeat
            expected.gaveUp = Array(names.prefix(HeartbeatCodec.maximumGivenUp))
            let decoded = HeartbeatCodec.decode(packet, key: testKey)
            #expect(decoded == .success(expected), "round \(round)")
            if decoded != .success(expected) { break }
        }
    }

    /// Random extension bytes, correctly signed: the decoder never traps and either accepts the
    /// packet or says it is malformed.
    @Test func randomSignedExtensions() {
        var rng = SplitMix64(seed: 0xE47E_2510)
        var accepted = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0:  // noise
                bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:  // a plausible given-up record with random name bytes
                let value = (0..<Int.random(in: 0...4, using: &rng)).flatMap { _ -> [UInt8] in
                    let length = Int.random(in: 0...6, using: &rng)
                    return [UInt8(length)] + (0..<length).map { _ in UInt8.random(in: 0x1F...0x80, using: &rng) }
                }
                bytes = Self.record(1, value)
            default:  // an unknown record with a random (possibly wrong) length
                bytes = [UInt8.random(in: 2...255, using: &rng), 0, UInt8.random(in: 0...8, using: &rng)]
                    + (0..<Int.random(in: 0...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            switch HeartbeatCodec.decode(Self.sealed(extension: bytes), key: testKey) {
            case .success(let heartbeat):
                accepted += 1
                if !heartbeat.gaveUp.allSatisfy(ResourceName.isValid) || heartbeat.gaveUp.count > HeartbeatCodec.maximumGivenUp {
                    Issue.record("invalid given-up list accepted (round \(round)): \(heartbeat.gaveUp)")
                }
            case .failure(.malformed): break
            case .failure(let other): Issue.record("round \(round): \(other) for \(bytes)")
            }
        }
        #expect(accepted > 0)
    }
}

/// The cleanup record (type 2): `kusu-ha resource cleanup` told to the peer.
@Suite struct HeartbeatCleanupTests {
    typealias H = HeartbeatHealthTests

    func with(_ cleanup: ResourceCleanup?, gaveUp: [String] = []) -> Heartbeat {
        var heartbeat = H.with(gaveUp: gaveUp)
        heartbeat.cleanup = cleanup
        return heartbeat
    }

    @Test(arguments: ["nginx.service", "", "repository"])
    func roundTrips(resource: String) throws {
        let heartbeat = with(ResourceCleanup(id: 0x0102_0304_0506_0708, resource: resource), gaveUp: ["database"])
        let packet = HeartbeatCodec.encode(heartbeat, key: testKey)
        #expect(try HeartbeatCodec.decode(packet, key: testKey).get() == heartbeat)
    }

    @Test func layout() {
        let packet = HeartbeatCodec.encode(with(ResourceCleanup(id: 7, resource: "db")), key: testKey)
        let record: [UInt8] = [2, 0, 11, 0, 0, 0, 0, 0, 0, 0, 7, 2] + Array("db".utf8)
        #expect(Array(packet.dropLast(HeartbeatCodec.macSize).suffix(record.count + 2)) == [0, UInt8(record.count)] + record)
    }

    /// A name the decoder would refuse is not sent (the packet stays decodable).
    @Test func anInvalidNameIsNotSent() throws {
        let packet = HeartbeatCodec.encode(with(ResourceCleanup(id: 1, resource: "a b")), key: testKey)
        #expect(try HeartbeatCodec.decode(packet, key: testKey).get().cleanup == nil)
    }

    @Test(arguments: [
        // (why, extension)
        ("too short for the id", H.record(2, [0, 0, 0, 1])),
        ("name overruns", H.record(2, [0, 0, 0, 0, 0, 0, 0, 1, 5, 65])),
        ("bytes after the name", H.record(2, [0, 0, 0, 0, 0, 0, 0, 1, 1, 65, 66])),
        ("a space in the name", H.record(2, [0, 0, 0, 0, 0, 0, 0, 1, 3, 97, 32, 98])),
        ("two cleanup records", H.record(2, [0, 0, 0, 0, 0, 0, 0, 1, 0]) + H.record(2, [0, 0, 0, 0, 0, 0, 0, 2, 0])),
    ])
    func malformedIsRejected(why: String, extension bytes: [UInt8]) {
        #expect(HeartbeatCodec.decode(H.sealed(extension: bytes), key: testKey) == .failure(.malformed), "\(why)")
    }
}

@Suite struct HeartbeatHandoverCleanTests {
    @Test func bitSevenRoundTripsAndIsSigned() throws {
        var heartbeat = HeartbeatHealthTests.sample
        heartbeat.handover = true
        heartbeat.handoverClean = true
        let packet = HeartbeatCodec.encode(heartbeat, key: testKey)
        #expect(packet[9] & 0x80 != 0)
        #expect(try HeartbeatCodec.decode(packet, key: testKey).get() == heartbeat)
        heartbeat.handoverClean = false
        #expect(HeartbeatCodec.encode(heartbeat, key: testKey)[9] & 0x80 == 0)
    }
}
