import ClusterCore
import Testing

/// The decoder must never trap, and no change to a signed packet may be accepted.
@Suite struct HeartbeatFuzzTests {
    @Test func randomBytes() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        var counts: [PacketRejection: Int] = [:]
        for round in 0..<100_000 {
            let length = Int.random(in: 0...600, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Give a share of them a valid prefix so the decoder gets past the magic and version.
            if round % 4 == 0 && length >= 6 { bytes.replaceSubrange(0..<6, with: Array("KUHB".utf8) + [1, 1]) }
            switch HeartbeatCodec.decode(bytes, key: testKey) {
            case .success: Issue.record("random bytes accepted (round \(round))")
            case .failure(let rejection): counts[rejection, default: 0] += 1
            }
        }
        #expect(counts[.badMagic, default: 0] > 0)
        #expect(counts[.truncated, default: 0] > 0)
        #expect(counts[.badSignature, default: 0] > 0)
    }

    @Test func mutationsOfValidPackets() {
        var rng = SplitMix64(seed: 0xBADC0DE)
        var checked = 0
        for round in 0..<100_000 {
            let original = HeartbeatCodec.encode(randomHeartbeat(using: &rng), key: testKey)
            var packet = original
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                mutate(&packet, using: &rng)
            }
            let result = HeartbeatCodec.decode(packet, key: testKey)
            if packet == original {
                guard case .success = result else {
                    Issue.record("unchanged packet rejected (round \(round))")
                    continue
                }
            } else {
                checked += 1
                if case .success = result { Issue.record("mutated packet accepted (round \(round)): \(packet)") }
            }
        }
        #expect(checked > 99_000)
    }

    private func mutate(_ packet: inout [UInt8], using rng: inout SplitMix64) {
        switch Int.random(in: 0..<6, using: &rng) {
        case 0:  // bit flip
            guard !packet.isEmpty else { return }
            let index = Int.random(in: 0..<packet.count, using: &rng)
            packet[index] ^= 1 << UInt8.random(in: 0...7, using: &rng)
        case 1:  // truncation
            packet.removeLast(Int.random(in: 0...packet.count, using: &rng))
        case 2:  // extension
            packet += (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 3:  // insertion
            let index = Int.random(in: 0...packet.count, using: &rng)
            packet.insert(UInt8.random(in: 0...255, using: &rng), at: index)
        case 4:  // deletion
            guard !packet.isEmpty else { return }
            packet.remove(at: Int.random(in: 0..<packet.count, using: &rng))
        default:  // overwrite a byte (maybe with the same value)
            guard !packet.isEmpty else { return }
            packet[Int.random(in: 0..<packet.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        }
    }
}
