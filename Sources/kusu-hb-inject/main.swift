// kusu-hb-inject — a test tool (not installed): sends crafted heartbeat packets,
// genuine or hostile, so tests can show that forged, replayed and malformed
// packets change nothing but the rejection counter.
import ArgumentParser
import ClusterCore
import Glibc
import Monitor
import SystemSupport

struct Inject: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kusu-hb-inject",
        abstract: "Send crafted kusu-ha heartbeat packets (for tests).")

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case valid, wrongKey = "wrong-key", random, truncated, bitflip
    }

    @Option(help: "Configuration supplying the cluster name, key and port.") var config: String
    @Option(help: "Node name to claim as the sender.") var node: String
    @Option(help: "Destination address.") var to: String
    @Option(help: "Link number written in the packet.") var link: UInt8 = 0
    @Option(help: "What to send: \(Mode.allCases.map(\.rawValue).joined(separator: ", ")).") var mode: Mode = .valid
    @Option(help: "Boot generation to claim.") var generation: UInt64 = 1
    @Option(help: "First sequence number.") var sequence: UInt64 = 1
    @Option(help: "Packets to send.") var count: Int = 1
    @Option(help: "Seed for the random modes.") var seed: UInt64 = 1

    func run() throws {
        let configuration = try Configuration.load(path: config)
        let key = try configuration.loadHeartbeatKey()
        guard let destination = IPAddress(to) else { throw ValidationError("bad address \(to)") }
        let socket = try HeartbeatSocket(ipv6: !destination.isIPv4, port: 0)
        var rng = SeededGenerator(seed: seed)
        let otherKey = HeartbeatKey((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })!
        for index in 0..<max(0, min(count, 100_000)) {
            let heartbeat = Heartbeat(
                kind: .heartbeat, role: .active, link: link, autoFailover: true, maintenance: false,
                generation: generation, sequence: sequence + UInt64(index), epoch: 99, lsn: 0, sentAt: 0,
                cluster: configuration.cluster.name, node: node)
            var packet = HeartbeatCodec.encode(heartbeat, key: mode == .wrongKey ? otherKey : key)
            switch mode {
            case .valid, .wrongKey: break
            case .random: packet = (0..<Int.random(in: 0...600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case .truncated: packet.removeLast(Int.random(in: 1...packet.count, using: &rng))
            case .bitflip:
                let bit = Int.random(in: 0..<(packet.count * 8), using: &rng)
                packet[bit / 8] ^= UInt8(1 << (bit % 8))
            }
            if let failure = socket.send(packet, to: destination, port: configuration.cluster.port) {
                throw ValidationError("sendto \(destination): \(String(cString: strerror(failure)))")
            }
        }
    }
}

/// SplitMix64: reproducible randomness for the hostile modes.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

Inject.main()
