import ClusterCore
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
