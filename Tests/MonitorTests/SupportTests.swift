import ClusterCore
import DBusKit
import Foundation
import Logging
import Testing

@testable import Monitor
@testable import SystemSupport

@Suite struct JournalFieldNames {
    @Test(arguments: [
        ("peer.state", "PEER_STATE"),
        ("hb.link", "HB_LINK"),
        ("message.id", "MESSAGE_ID"),
        ("error", "ERROR"),
        ("x-y", "X_Y"),
    ])
    func valid(key: String, field: String) {
        #expect(JournalLogHandler.journalFieldName(key) == field)
    }

    @Test(arguments: ["", "_private", "1st", "naïve", "with space", String(repeating: "a", count: 65)])
    func refused(key: String) {
        #expect(JournalLogHandler.journalFieldName(key) == nil)
    }

    @Test func priorities() {
        #expect(JournalLogHandler.syslogPriority(.notice) == 5)
        #expect(JournalLogHandler.syslogPriority(.critical) == 2)
        #expect(JournalLogHandler.syslogPriority(.debug) == 7)
    }
}

@Suite struct PersistedState {
    @Test func roundTrip() {
        var state = PersistentState()
        state.epoch = 7
        state.generation = 1_700_000_000_000_000
        state.peerGeneration = 42
        #expect(PersistentState(parsing: state.serialized) == state)
        state.maintenance = true
        state.autoFailover = false
        #expect(PersistentState(parsing: state.serialized) == state)
        state.autoFailover = nil
        #expect(PersistentState(parsing: state.serialized) == state)
    }

    /// A damaged or forged state file with a counter above the bound is refused at start,
    /// with the way out in the message; removing the file starts afresh.
    @Test func aPoisonedStateFileIsRefusedWithTheWayOut() throws {
        var template = Array((NSTemporaryDirectory() + "/kusu-state.XXXXXX").utf8CString)
        let directory = String(cString: try #require(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for line in ["epoch=18446744073709551615", "generation=\(PersistentState.maximumCounter + 1)", "peer_generation=9223372036854775808"] {
            try (line + "\n").write(toFile: directory + "/state", atomically: true, encoding: .utf8)
            #expect {
                _ = try StateStore(directory: directory)
            } throws: { error in
                "\(error)".contains("is above the largest valid value") && "\(error)".contains("remove the file")
            }
        }
        try FileManager.default.removeItem(atPath: directory + "/state")
        #expect(try StateStore(directory: directory).state == PersistentState())
    }

    @Test func rootAndTheMonitorAreServedFirst() {
        #expect(MonitorUser.isPrivileged(0))
        #expect(!MonitorUser.isPrivileged(nil))
        #expect(!MonitorUser.isPrivileged(65534))
    }

    @Test func toleratesJunkAndUnknownKeys() {
        let state = PersistentState(parsing: "epoch = 3\r\nnonsense\nfuture_key=9\ngeneration=x\npeer_generation=5\n")
        #expect(state.epoch == 3)
        #expect(state.generation == 0)
        #expect(state.peerGeneration == 5)
    }
}

@Suite struct RejectionLogging {
    @Test func oneLinePerReasonPerTenSeconds() {
        var log = RejectionLog()
        #expect(log.shouldLog(.badSignature, at: .seconds(100)) == 0)
        #expect(log.shouldLog(.badSignature, at: .seconds(101)) == nil)
        #expect(log.shouldLog(.badSignature, at: .seconds(105)) == nil)
        #expect(log.shouldLog(.replayed, at: .seconds(105)) == 0)
        // After ten seconds the next one is logged with the count it stood for.
        #expect(log.shouldLog(.badSignature, at: .seconds(110)) == 2)
        #expect(log.shouldLog(.badSignature, at: .seconds(111)) == nil)
    }
}

@Suite struct ResidentCodeRelease {
    /// RSS of the process in KiB, from /proc/self/status.
    static func residentKiB() throws -> Int {
        let text = String(decoding: try Files.read("/proc/self/status"), as: UTF8.self)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    @Test func dropsTheExecutablesCodeAndTheProcessGoesOn() throws {
        let before = try Self.residentKiB()
        let released = ResidentCode.releaseExecutableCode()
        // The test binary has a code mapping of its own, so something was released...
        #expect(released > 0)
        let after = try Self.residentKiB()
        #expect(after < before, "RSS \(before) → \(after) KiB")
        // ... and the code runs on, faulted back in from the page cache as it is used.
        var state = ProbeState(targets: [IPAddress.v4(198, 18, 0, 1)], window: .seconds(3))
        let seq = state.beginRound(at: .seconds(1))
        let counted = state.accept(from: IPAddress.v4(198, 18, 0, 1), sequence: seq, at: .seconds(1))
        #expect(counted)
        let configuration = try Configuration.parse(Self.minimalPair, file: "t.toml", hostName: "a")
        #expect(configuration.peerNode.name == "b")
    }

    static let minimalPair = """
        [[nodes]]
        name = "a"
        addresses = ["198.18.0.11"]

        [[nodes]]
        name = "b"
        addresses = ["198.18.0.12"]
        """
}

@Suite struct OperationOutcomeTests {
    /// An error reply without a message is a failure (it was once taken for a success).
    @Test func anErrorWithoutAMessageIsAFailureNamedByItsName() {
        let nameless = DBusError(name: "org.kusu.Effector1.Error.UnitFailed", message: "")
        #expect(HeartbeatMonitor.outcome(.failure(nameless)) == (false, "org.kusu.Effector1.Error.UnitFailed"))
        #expect(HeartbeatMonitor.outcome(.failure(DBusError(name: "x.Y", message: "units failed"))) == (false, "units failed"))
        #expect(HeartbeatMonitor.outcome(.success(())) == (true, ""))
    }
}
