import ClusterCore
import Glibc
// kusu-hbd's persisted state: a few counters that must survive restarts.
//
//   epoch            the cluster generation this node last knew (raised by takeovers)
//   generation       this process's boot generation, strictly increasing per start
//   peer_generation  the highest generation accepted from the peer (replay guard
//                    across our own restarts)
//   maintenance      1 while an operator has put the pair in maintenance
//   auto_failover    0 or 1 when an operator overrode cluster.auto_failover
//
// Stored as `key=value` lines in STATE_DIRECTORY/state, replaced atomically.

public struct PersistentState: Equatable, Sendable {
    public var epoch: UInt64 = 0
    public var generation: UInt64 = 0
    public var peerGeneration: UInt64 = 0
    public var maintenance = false
    /// An operator's SetAutoFailover; nil = as configured.
    public var autoFailover: Bool?
    public init() {}

    public init(parsing text: String) {
        for line in text.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let value = UInt64(parts[1].trimmingWhitespace()) else { continue }
            switch parts[0].trimmingWhitespace() {
            case "epoch": epoch = value
            case "generation": generation = value
            case "peer_generation": peerGeneration = value
            case "maintenance": maintenance = value != 0
            case "auto_failover": autoFailover = value != 0
            default: continue
            }
        }
    }

    /// The largest valid epoch or generation.
    public static let maximumCounter = Heartbeat.maximumCounter

    public var serialized: String {
        "epoch=\(epoch)\ngeneration=\(generation)\npeer_generation=\(peerGeneration)\nmaintenance=\(maintenance ? 1 : 0)\n"
            + (autoFailover.map { "auto_failover=\($0 ? 1 : 0)\n" } ?? "")
    }
}

public final class StateStore {
    public let path: String
    public private(set) var state: PersistentState

    /// Opens `directory/state`; a missing file is a fresh state, an unreadable one an error.
    public init(directory: String) throws(FileError) {
        path = directory + "/state"
        do {
            state = PersistentState(parsing: String(decoding: try Files.read(path, limit: 4096), as: UTF8.self))
        } catch where error.code == ENOENT {
            state = PersistentState()
        }
        // No genuine node gets near 2^62 (Heartbeat.maximumCounter: a generation is a time in
        // µs, an epoch counts takeovers); a larger value is a damaged or forged file, and using
        // it would trap (an epoch + 1) or refuse the real peer forever. Refused, with the way out.
        for (name, value) in [("epoch", state.epoch), ("generation", state.generation), ("peer_generation", state.peerGeneration)]
        where value > PersistentState.maximumCounter {
            throw FileError(
                path: path,
                reason: "\(name)=\(value) is above the largest valid value \(PersistentState.maximumCounter): the file is damaged or was forged; "
                    + "stop kusu-hbd, remove the file (kusu-hbd starts afresh: epoch 0, no maintenance) and start it again")
        }
    }

    public func update(_ change: (inout PersistentState) -> Void) throws(FileError) {
        var next = state
        change(&next)
        guard next != state else { return }
        try Files.replace(path, with: Array(next.serialized.utf8), mode: 0o640)
        state = next
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return s
    }
}
