import ClusterCore

/// SplitMix64: a tiny seeded PRNG, so every randomized test is reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension MonotonicInstant {
    static func ms(_ value: Int) -> MonotonicInstant { MonotonicInstant(.milliseconds(value)) }
}

let testKey = HeartbeatKey(Array("0123456789abcdef0123456789abcdef".utf8))!
let otherKey = HeartbeatKey(Array("fedcba9876543210fedcba9876543210".utf8))!

func heartbeat(
    link: UInt8 = 0, generation: UInt64 = 1, sequence: UInt64, role: NodeRole = .active, epoch: UInt64 = 1,
    lsn: UInt64 = 0, cluster: String = "kusu", node: String = "installer", sentAt: UInt64 = 1_700_000_000_000_000
) -> Heartbeat {
    Heartbeat(
        role: role, link: link, autoFailover: true, maintenance: false, generation: generation, sequence: sequence,
        epoch: epoch, lsn: lsn, sentAt: sentAt, cluster: cluster, node: node
    )
}
