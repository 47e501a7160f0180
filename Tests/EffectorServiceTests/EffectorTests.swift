import ClusterCore
import DBusKit
import EffectorService
import Logging
import Synchronization
import Testing

/// A two-node configuration with two floating addresses, a database and three units.
func testConfiguration(database: Bool = true) throws -> Configuration {
    var text = """
        [cluster]
        node = "failover"
        tie_breakers = []

        [[nodes]]
        name = "installer"
        addresses = ["198.18.0.11"]

        [[nodes]]
        name = "failover"
        addresses = ["198.18.0.12"]

        [[addresses]]
        address = "198.18.0.100/24"
        interface = "eth0"
        arp_count = 3
        arp_interval_ms = 5

        [[addresses]]
        address = "198.18.1.100/24"
        interface = "eth1"
        arp_count = 1

        [units]
        start = ["dnsmasq.service", "tftpd-hpa.service", "nginx.service"]
        """
    if database { text += "\n[database]\n" }
    return try Configuration.parse(text, file: "test.toml", hostName: "failover")
}

struct Harness {
    let journal = Journal()
    let loop: EventLoop
    let addresses: FakeAddresses
    let units: FakeUnits
    let database: FakeDatabase?
    let effector: Effector
    var changes: [Set<Effector.Published>] { changesBox.value }
    let changesBox = Box<[Set<Effector.Published>]>([])

    init(databaseRole: String? = "standby", lag: UInt64 = 0, configuration: Configuration? = nil) throws {
        loop = try EventLoop()
        addresses = FakeAddresses(journal)
        units = FakeUnits(journal)
        let journal = self.journal
        database = databaseRole.map { FakeDatabase(journal, role: $0, lag: lag) }
        var clock: UInt64 = 1_000
        effector = Effector(
            configuration: try configuration ?? testConfiguration(database: databaseRole != nil), loop: loop, addresses: addresses,
            database: database, units: units, logger: Logger(label: "test"),
            wallClock: {
                clock += 1
                return clock
            })
        let box = changesBox
        effector.onChange = { box.value.append($0) }
    }

    /// Runs one operation to completion on the loop (bounded).
    func run(_ operation: Operation, reason: String = "test") throws -> Result<Void, EffectorError>? {
        var outcome: Result<Void, EffectorError>?
        effector.run(operation, reason: reason) { outcome = $0 }
        _ = try loop.run(until: loop.now + .seconds(10)) { outcome != nil }
        return outcome
    }
}

final class Box<T> {
    var value: T
    init(_ value: T) { self.value = value }
}

@Suite struct EffectorSequencing {
    @Test func takeoverPromotesThenAddsThenAnnouncesThenStartsUnits() throws {
        let h = try Harness()
        let result = try h.run(.takeover, reason: "peer dead")
        #expect(result.map { (try? $0.get()) != nil } == true)
        #expect(h.journal.all == [
            "promote", "synchronous ''",
            "add 198.18.0.100/24", "add 198.18.1.100/24",
            "announce 198.18.0.100", "announce 198.18.1.100",
            "start dnsmasq.service", "start tftpd-hpa.service", "start nginx.service",
        ])
        #expect(h.effector.heldAddresses.map(\.description) == ["198.18.0.100/24", "198.18.1.100/24"])
        #expect(h.effector.databaseState.role == "primary")
        #expect(h.effector.lastOperation?.name == "Takeover")
        #expect(h.effector.lastOperation?.reason == "peer dead")
        #expect(h.effector.lastOperation?.success == true)
        #expect(!h.effector.busy)
        #expect(h.changes.first == [.busy])
        #expect(h.changes.last == [.busy, .lastOperation])
    }

    @Test func takeoverIsIdempotent() throws {
        let h = try Harness()
        _ = try h.run(.takeover)
        let second = try h.run(.takeover)
        #expect((try? second?.get()) != nil)
        // Already primary and already holding the addresses: success, nothing promoted twice.
        #expect(h.journal.all.filter { $0 == "promote" }.count == 1)
        #expect(h.effector.heldAddresses.count == 2)
    }

    @Test func remainingAnnouncementsAreSentInTheBackground() throws {
        let h = try Harness()
        _ = try h.run(.takeover)
        // arp_count 3 at 5 ms for the first address: two more rounds after the operation.
        #expect(try h.loop.run(until: h.loop.now + .seconds(5)) {
            h.journal.all.filter { $0 == "announce 198.18.0.100" }.count == 3
        })
        #expect(h.journal.all.filter { $0 == "announce 198.18.1.100" }.count == 1)
    }

    @Test func releaseStopsUnitsInReverseThenRemovesAddresses() throws {
        let h = try Harness()
        _ = try h.run(.takeover)
        let before = h.journal.all.count
        _ = try h.run(.release)
        let released = Array(h.journal.all[before...]).filter { !$0.hasPrefix("announce") }
        #expect(released == [
            "stop nginx.service", "stop tftpd-hpa.service", "stop dnsmasq.service",
            "remove 198.18.1.100/24", "remove 198.18.0.100/24",
        ])
        #expect(h.effector.heldAddresses.isEmpty)
    }

    @Test func aFailedUnitStopsTheSequenceAndIsReported() throws {
        let h = try Harness()
        h.units.failing = ["tftpd-hpa.service"]
        let result = try h.run(.takeover)
        guard case .failure(let error) = result else { Issue.record("expected a failure"); return }
        #expect(error.code == .unitFailed)
        #expect(!h.journal.all.contains("start nginx.service"))
        #expect(h.effector.lastOperation?.success == false)
        #expect(h.effector.lastOperation?.error.contains("tftpd-hpa.service") == true)
    }

    @Test func promoteRefusesOnAPrimaryAndBeyondTheLag() throws {
        let primary = try Harness(databaseRole: "primary")
        guard case .failure(let e1) = try primary.run(.promoteDatabase) else { Issue.record("expected a failure"); return }
        #expect(e1.code == .databaseNotStandby)
        #expect(e1.busErrorName == "org.kusu.Effector1.Error.DatabaseNotStandby")

        let lagging = try Harness(databaseRole: "standby", lag: 10_000_000)
        guard case .failure(let e2) = try lagging.run(.takeover) else { Issue.record("expected a failure"); return }
        #expect(e2.code == .replicationLag)
        // Nothing else happened: no address, no unit.
        #expect(lagging.journal.all.isEmpty)
    }

    @Test func withoutADatabaseTakeoverSkipsIt() throws {
        let h = try Harness(databaseRole: nil)
        #expect((try? h.run(.takeover)?.get()) != nil)
        #expect(!h.journal.all.contains("promote"))
        guard case .failure(let error) = try h.run(.promoteDatabase) else { Issue.record("expected a failure"); return }
        #expect(error.code == .notConfigured)
    }

    @Test func oneOperationAtATime() throws {
        let h = try Harness()
        var first: Result<Void, EffectorError>?
        var second: Result<Void, EffectorError>?
        h.effector.run(.takeover, reason: "one") { first = $0 }   // waits on a worker thread (promote)
        h.effector.run(.release, reason: "two") { second = $0 }
        guard case .failure(let error) = second else { Issue.record("the second operation was not refused"); return }
        #expect(error.code == .busy)
        #expect(try h.loop.run(until: h.loop.now + .seconds(10)) { first != nil })
    }

    @Test func rejoinRefusesWhileHoldingAddressesThenRejoins() throws {
        let h = try Harness(databaseRole: "primary")
        _ = try h.run(.addAddress(h.effector.configuration.addresses[0]))
        guard case .failure(let error) = try h.run(.rejoinDatabase(primary: IPAddress("198.18.0.11")!)) else {
            Issue.record("expected a refusal"); return
        }
        #expect(error.code == .invalidArgument)
        _ = try h.run(.removeAddress(h.effector.configuration.addresses[0]))
        #expect((try? h.run(.rejoinDatabase(primary: IPAddress("198.18.0.11")!))?.get()) != nil)
        #expect(Array(h.journal.all.suffix(4)) == [
            "stop postgresql@15-main.service", "makeStandby 198.18.0.11 auto",
            "start postgresql@15-main.service", "waitUntilStreaming",
        ])
        #expect(h.effector.databaseState.role == "standby")
    }

    @Test func strictTakeoverMakesCommitsWaitForThePeer() throws {
        var configuration = try testConfiguration()
        configuration.database?.synchronous = .strict
        let h = try Harness(configuration: configuration)
        _ = try h.run(.takeover)
        #expect(Array(h.journal.all.prefix(2)) == ["promote", "synchronous '\"installer\"'"])
        // Already primary: the setting is left to kusu-hbd's guard.
        _ = try h.run(.takeover)
        #expect(h.journal.all.filter { $0.hasPrefix("synchronous") }.count == 1)
    }

    @Test func offLeavesSynchronousStandbyNamesAlone() throws {
        var configuration = try testConfiguration()
        configuration.database?.synchronous = .off
        let h = try Harness(configuration: configuration)
        _ = try h.run(.takeover)
        #expect(!h.journal.all.contains { $0.hasPrefix("synchronous") })
    }

    @Test func cloneUsesTheMethodAndPublishesProgress() throws {
        let h = try Harness(databaseRole: "down")
        #expect((try? h.run(.cloneDatabase(primary: IPAddress("198.18.0.11")!, method: "basebackup"))?.get()) != nil)
        #expect(Array(h.journal.all.suffix(4)) == [
            "stop postgresql@15-main.service", "makeStandby 198.18.0.11 basebackup",
            "start postgresql@15-main.service", "waitUntilStreaming",
        ])
        #expect(h.effector.lastOperation?.name == "CloneDatabase")
        #expect(h.changes.contains { $0.contains(.progress) })
        #expect(h.effector.progress == "")
    }

    @Test func setSynchronousStandbyPublishesTheNewValue() throws {
        let h = try Harness(databaseRole: "primary")
        #expect((try? h.run(.setSynchronousStandby("\"installer\""))?.get()) != nil)
        #expect(h.journal.all == ["synchronous '\"installer\"'"])
        #expect(h.effector.databaseState.synchronousStandbyNames == "\"installer\"")
        #expect(h.changes.contains { $0.contains(.synchronousStandbyNames) })
    }

    @Test func takeoverStartsAStoppedDatabaseFirst() throws {
        // A node that handed over (its database stopped cleanly, still a primary) takes the role back.
        let h = try Harness(databaseRole: "down")
        let database = try #require(h.database)
        h.effector.refreshDatabase()
        #expect(try h.loop.run(until: h.loop.now + .seconds(5)) { h.effector.databaseState.role == "down" })
        h.units.onStart = { unit in if unit == "postgresql@15-main.service" { database.role.withLock { $0 = "primary" } } }
        #expect((try? h.run(.takeover)?.get()) != nil)
        #expect(h.journal.all.first == "start postgresql@15-main.service")
        #expect(h.journal.all.contains("add 198.18.0.100/24"))
        #expect(h.effector.databaseState.role == "primary")
        // A running database is not started again.
        let running = try Harness(databaseRole: "standby")
        #expect((try? running.run(.takeover)?.get()) != nil)
        #expect(!running.journal.all.contains("start postgresql@15-main.service"))
        // A unit that does not start fails the takeover before anything else happens.
        let failing = try Harness(databaseRole: "down")
        failing.effector.refreshDatabase()
        #expect(try failing.loop.run(until: failing.loop.now + .seconds(5)) { failing.effector.databaseState.role == "down" })
        failing.units.failing = ["postgresql@15-main.service"]
        guard case .failure(let error)? = try failing.run(.takeover) else { Issue.record("expected a failure"); return }
        #expect(error.code == .unitFailed)
        #expect(!failing.journal.all.contains { $0.hasPrefix("add ") })
    }

    @Test func detachStandbysIsAnOperationOnThePrimaryOnly() throws {
        let h = try Harness(databaseRole: "primary")
        #expect((try? h.run(.detachStandbys)?.get()) != nil)
        #expect(h.journal.all == ["detachStandbys"])
        #expect(h.effector.lastOperation?.name == "DetachStandbys")
        let standby = try Harness(databaseRole: "standby")
        guard case .failure(let error) = try standby.run(.detachStandbys) else {
            Issue.record("expected a refusal"); return
        }
        #expect(error.code == .invalidArgument)
        #expect(standby.journal.all.isEmpty)
    }

    @Test func waitForReplayIsNotAnOperation() throws {
        let h = try Harness(databaseRole: "standby")
        var results: [Result<(reached: Bool, replayed: UInt64), EffectorError>] = []
        h.effector.waitForReplay(to: 100, timeout: .seconds(1)) { results.append($0) }
        h.effector.waitForReplay(to: 101, timeout: .seconds(1)) { results.append($0) }
        #expect(try h.loop.run(until: h.loop.now + .seconds(5)) { results.count == 2 })
        let reached = results.compactMap { try? $0.get().reached }
        #expect(Set(reached) == [false, true] && reached.count == 2)
        #expect(!h.effector.busy)
        #expect(h.effector.lastOperation == nil)
        var outcome: Result<(reached: Bool, replayed: UInt64), EffectorError>?
        try Harness(databaseRole: nil).effector.waitForReplay(to: 1, timeout: .seconds(1)) { outcome = $0 }
        guard case .failure(let error)? = outcome else { Issue.record("expected notConfigured"); return }
        #expect(error.code == .notConfigured)
    }

    /// ProbeAddress and WaitForReplay each take a worker thread: at most
    /// `Effector.maximumWorkers` at once, the rest refused at once (Busy), and freed when done.
    @Test func readsOnWorkerThreadsAreBounded() throws {
        let h = try Harness(databaseRole: "standby")
        let address = try #require(h.effector.configuration.addresses.first)
        var ok = 0
        var refused: [EffectorError] = []
        func count<T>(_ result: Result<T, EffectorError>) {
            switch result {
            case .success: ok += 1
            case .failure(let error): refused.append(error)
            }
        }
        for index in 0..<(Effector.maximumWorkers + 3) {
            if index % 2 == 0 {
                h.effector.waitForReplay(to: 100, timeout: .seconds(1)) { count($0) }
            } else {
                h.effector.probe(address) { count($0) }
            }
        }
        // The excess is refused at once, before any worker ran.
        #expect(refused.count == 3)
        #expect(refused.allSatisfy { $0.code == .busy && $0.message.contains("already under way") })
        #expect(try h.loop.run(until: h.loop.now + .seconds(5)) { ok == Effector.maximumWorkers })
        // Freed when done: the next one runs.
        h.effector.probe(address) { count($0) }
        #expect(try h.loop.run(until: h.loop.now + .seconds(5)) { ok == Effector.maximumWorkers + 1 })
        #expect(refused.count == 3)
    }

    @Test func announcingAnAddressNotHeldIsRefused() throws {
        let h = try Harness()
        guard case .failure(let error) = try h.run(.announceAddress(h.effector.configuration.addresses[0])) else {
            Issue.record("expected a refusal"); return
        }
        #expect(error.code == .invalidArgument)
        #expect(h.journal.all.isEmpty)
    }
}

@Suite struct ArgumentValidation {
    @Test(arguments: [
        ("198.18.0.100", "198.18.0.100/24"),
        ("198.18.0.100/24", "198.18.0.100/24"),
        (" 198.18.1.100 ", "198.18.1.100/24"),
    ])
    func configuredAddresses(argument: String, resolved: String) throws {
        let resources = Resources(configuration: try testConfiguration())
        #expect((try? resources.floatingAddress(argument).get())?.description == resolved)
    }

    @Test(arguments: [
        ("198.18.0.101", EffectorError.Code.notConfigured),
        ("198.18.0.100/25", .notConfigured),
        ("10.0.0.1", .notConfigured),
        ("not-an-address", .invalidArgument),
        ("198.18.0.100/99", .invalidArgument),
        ("", .invalidArgument),
        ("198.18.0.100/", .invalidArgument),
    ])
    func refusedAddresses(argument: String, code: EffectorError.Code) throws {
        let resources = Resources(configuration: try testConfiguration())
        guard case .failure(let error) = resources.floatingAddress(argument) else {
            Issue.record("accepted \(argument)"); return
        }
        #expect(error.code == code)
    }

    @Test func primaries() throws {
        let resources = Resources(configuration: try testConfiguration())
        #expect((try? resources.primary("installer").get())?.address == IPAddress("198.18.0.11"))
        #expect((try? resources.primary("198.18.0.11").get())?.node.name == "installer")
        guard case .failure(let own) = resources.primary("failover") else { Issue.record("accepted self"); return }
        #expect(own.code == .invalidArgument)
        guard case .failure(let other) = resources.primary("198.18.9.9") else { Issue.record("accepted a stranger"); return }
        #expect(other.code == .notConfigured)
        let noDatabase = Resources(configuration: try testConfiguration(database: false))
        guard case .failure(let none) = noDatabase.primary("installer") else { Issue.record("accepted without [database]"); return }
        #expect(none.code == .notConfigured)
    }

    @Test func cloneMethodsAndSynchronousStandbyArguments() throws {
        let resources = Resources(configuration: try testConfiguration())
        #expect((try? resources.cloneMethod("").get()) == "auto")
        #expect((try? resources.cloneMethod("rewind").get()) == "rewind")
        #expect((try? resources.cloneMethod("basebackup").get()) == "basebackup")
        guard case .failure(let bad) = resources.cloneMethod("rsync") else { Issue.record("accepted a bad method"); return }
        #expect(bad.code == .invalidArgument)
        #expect((try? resources.synchronousStandby("").get()) == "")
        #expect((try? resources.synchronousStandby("installer").get()) == "\"installer\"")
        #expect((try? resources.synchronousStandby("\"installer\"").get()) == "\"installer\"")
        guard case .failure(let star) = resources.synchronousStandby("*") else { Issue.record("accepted '*'"); return }
        #expect(star.code == .invalidArgument)
        guard case .failure(let own) = resources.synchronousStandby("failover") else { Issue.record("accepted this node"); return }
        #expect(own.code == .invalidArgument)
        let noDatabase = Resources(configuration: try testConfiguration(database: false))
        guard case .failure(let none) = noDatabase.synchronousStandby("") else { Issue.record("accepted without [database]"); return }
        #expect(none.code == .notConfigured)
    }

    @Test func reasons() throws {
        let resources = Resources(configuration: try testConfiguration())
        #expect((try? resources.reason("").get()) == "unspecified")
        #expect((try? resources.reason("peer dead").get()) == "peer dead")
        #expect((try? resources.reason("line\nbreak").get()) == nil)
        #expect((try? resources.reason(String(repeating: "x", count: 300)).get()) == nil)
    }
}

@Suite struct StepTimings {
    @Test func takeoverReportsEachKindOfStep() throws {
        let h = try Harness()
        _ = try h.run(.takeover)
        let summary = h.effector.lastTimingSummary
        let kinds = summary.split(separator: " ").map { $0.split(separator: "=")[0] }
        #expect(kinds == ["promote", "sync", "address", "announce", "units"], "\(summary)")
        #expect(summary.split(separator: " ").allSatisfy { $0.hasSuffix("ms") && $0.contains(".") })
    }
}

@Suite struct Probing {
    @Test func aProbeIsNotAnOperation() throws {
        let h = try Harness()
        var results: [AddressProbe] = []
        for address in h.effector.configuration.addresses {
            h.effector.probe(address) { if case .success(let probe) = $0 { results.append(probe) } }
        }
        #expect(try h.loop.run(until: h.loop.now + .seconds(5)) { results.count == 2 })
        #expect(Set(results.map(\.answered)) == [true, false])
        #expect(!h.effector.busy)
        #expect(h.effector.lastOperation == nil)
    }
}
