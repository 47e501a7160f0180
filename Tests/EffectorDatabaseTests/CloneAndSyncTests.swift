import ClusterCore
import Effector
import Foundation
import Synchronization
import Testing

/// Building a standby from nothing, and what commits wait for, against real PostgreSQL 15.
@Suite(.serialized, .enabled(if: canRunPostgres, "needs root and PostgreSQL 15 in /usr/lib/postgresql/15/bin"))
struct CloneAndSyncTests {
    @Test func cloneIntoAMissingDirectoryThenOverAForeignCluster() throws {
        try withPostgresPair { pair in
            let primary = pair.connect
            try primary(pair.primaryDirectory).execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('before clone')")
            try pair.stop(pair.standbyDirectory)
            try FileManager.default.removeItem(atPath: pair.standbyDirectory)

            let lines = Mutex<[String]>([])
            let used = try StandbySetup.makeStandby(
                dataDirectory: pair.standbyDirectory, primaryConninfo: pair.replicationConninfo(pair.primaryDirectory),
                applicationName: "node-b", slot: "kusu_node_b", method: .auto
            ) { line in lines.withLock { $0.append(line) } }
            #expect(used == .basebackup)
            let progress = lines.withLock { $0 }
            print("progress: \(progress)")
            #expect(progress.contains { $0.contains("holds no database cluster") })
            #expect(progress.contains { $0.hasPrefix("pg_basebackup: ") && $0.hasSuffix("% copied") })

            try pair.start(pair.standbyDirectory)
            let controller = DatabaseController(settings: pair.settings(pair.standbyDirectory), peerName: "node-a")
            let streaming = try StandbySetup.waitUntilStreaming(controller, timeout: .seconds(60))
            #expect(streaming.role == .standby)
            #expect(streaming.replication.slot == "kusu_node_b")
            // A write on the primary reaches the clone; the primary keeps a slot for it, in use.
            try primary(pair.primaryDirectory).query("INSERT INTO t VALUES ($1)", ["after clone"])
            let standby = try pair.connect(pair.standbyDirectory)
            #expect(eventually { (try? standby.scalar("SELECT count(*) FROM t")) == "2" })
            #expect(try primary(pair.primaryDirectory).scalar("SELECT active FROM pg_replication_slots WHERE slot_name = 'kusu_node_b'") == "t")
            let autoConf = try String(contentsOfFile: pair.standbyDirectory + "/postgresql.auto.conf", encoding: .utf8)
            #expect(autoConf.contains("primary_slot_name = 'kusu_node_b'"))
            #expect(autoConf.contains("wal_retrieve_retry_interval = '200ms'"))
            #expect(autoConf.contains("synchronous_standby_names = ''"))
            #expect(autoConf.contains("application_name=''node-b''"))
            let primaryView = DatabaseController(settings: pair.settings(pair.primaryDirectory), peerName: "node-b")
            #expect(eventually { primaryView.status().replication.state == "streaming" })
            #expect(primaryView.status().replication.slot == "kusu_node_b")

            // A directory holding another cluster (a fresh initdb) is replaced, and kept aside.
            try pair.stop(pair.standbyDirectory)
            try FileManager.default.removeItem(atPath: pair.standbyDirectory)
            _ = try pair.asPostgres([postgresBin + "/initdb", "-D", pair.standbyDirectory, "-U", "postgres", "--no-instructions"])
            let second = try StandbySetup.makeStandby(
                dataDirectory: pair.standbyDirectory, primaryConninfo: pair.replicationConninfo(pair.primaryDirectory),
                applicationName: "node-b", slot: "kusu_node_b", method: .auto)
            #expect(second == .basebackup)
            #expect(FileManager.default.fileExists(atPath: pair.standbyDirectory + ".kusu-previous/PG_VERSION"))
            try pair.start(pair.standbyDirectory)
            _ = try StandbySetup.waitUntilStreaming(controller, timeout: .seconds(60))
            let again = try pair.connect(pair.standbyDirectory)
            #expect(eventually { (try? again.scalar("SELECT count(*) FROM t")) == "2" })
        }
    }

    @Test func waitForReplayAndDetachingTheStandby() throws {
        try withPostgresPair { pair in
            let primaryView = DatabaseController(settings: pair.settings(pair.primaryDirectory), peerName: "node-b")
            let standbyView = DatabaseController(settings: pair.settings(pair.standbyDirectory), peerName: "node-a")
            let primary = try pair.connect(pair.primaryDirectory)
            #expect(eventually { (try? primary.scalar("SELECT state FROM pg_stat_replication")) == "streaming" })
            try primary.execute("CREATE TABLE r (v int); INSERT INTO r VALUES (1)")
            let target = primaryView.status().lsn
            #expect(target > 0)

            // The primary's position is replayed on the standby: reached, at or past it.
            let done = try standbyView.waitForReplay(to: target, timeout: .seconds(10))
            #expect(done.reached)
            #expect(done.replayed >= target)
            // A position never written: not reached, and the wait is bounded by its timeout.
            let clock = ContinuousClock()
            let started = clock.now
            let far = try standbyView.waitForReplay(to: target + (1 << 40), timeout: .milliseconds(300))
            let took = clock.now - started
            #expect(!far.reached)
            #expect(far.replayed >= target)
            #expect(took >= .milliseconds(300) && took < .seconds(5), "took \(took)")
            // A primary replays nothing; a standby has no standbys to detach. Nothing changes.
            #expect(throws: DatabaseError.self) { _ = try primaryView.waitForReplay(to: target, timeout: .milliseconds(10)) }
            let notPrimary = #expect(throws: DatabaseError.self) { _ = try standbyView.terminateReplicationConnections() }
            #expect(notPrimary?.code == .notPrimary)

            // Detaching ends the walsender; the standby, whose link works, reconnects by itself.
            let before = try primary.scalar("SELECT pid FROM pg_stat_replication")
            #expect(try primaryView.terminateReplicationConnections() == 1)
            #expect(eventually {
                let now = try? primary.scalar("SELECT pid FROM pg_stat_replication WHERE state = 'streaming'")
                return now != nil && now != before
            })
            try primary.execute("INSERT INTO r VALUES (2)")
            let after = primaryView.status().lsn
            #expect(try standbyView.waitForReplay(to: after, timeout: .seconds(10)).reached)
        }
    }

    @Test func chooseMethod() {
        let facts = PrimaryFacts(systemIdentifier: "7", databaseBytes: 500 << 20, walBytes: 128 << 20)
        #expect(StandbySetup.chooseMethod(.auto, localSystemIdentifier: nil, primary: facts).method == .basebackup)
        #expect(StandbySetup.chooseMethod(.auto, localSystemIdentifier: "8", primary: facts).method == .basebackup)
        #expect(StandbySetup.chooseMethod(.auto, localSystemIdentifier: "7", primary: facts).method == .rewind)
        var small = facts
        small.databaseBytes = 30 << 20
        #expect(StandbySetup.chooseMethod(.auto, localSystemIdentifier: "7", primary: small).method == .basebackup)
        #expect(StandbySetup.chooseMethod(.rewind, localSystemIdentifier: nil, primary: facts).method == .rewind)
        #expect(StandbySetup.chooseMethod(.basebackup, localSystemIdentifier: "7", primary: facts).method == .basebackup)
    }

    @Test func synchronousStandbyNamesHoldsThenReleasesCommits() throws {
        try withPostgresPair { pair in
            // pg_basebackup -R names the standby "walreceiver".
            let primary = DatabaseController(settings: pair.settings(pair.primaryDirectory), peerName: "walreceiver")
            try pair.connect(pair.primaryDirectory).execute("CREATE TABLE t (v text)")
            #expect(eventually { primary.status().replication.state == "streaming" })
            #expect(primary.status().replication.syncState == "async")

            try primary.setSynchronousStandbyNames("\"walreceiver\"")
            #expect(primary.status().replication.synchronousStandbyNames == "\"walreceiver\"")
            #expect(eventually { primary.status().replication.syncState == "sync" })

            // Name a standby that is not there: a commit waits...
            try primary.setSynchronousStandbyNames("\"absent\"")
            let done = Mutex(false)
            let conninfo = pair.controller(pair.primaryDirectory).conninfo
            let writer = Thread {
                if let connection = try? PostgresConnection(conninfo: conninfo) {
                    _ = try? connection.query("INSERT INTO t VALUES ('waits')")
                }
                done.withLock { $0 = true }
            }
            writer.start()
            #expect(!eventually(.milliseconds(700)) { done.withLock { $0 } }, "a commit did not wait for the named standby")
            // ... and goes through once commits no longer wait for any standby.
            try primary.setSynchronousStandbyNames("")
            #expect(eventually(.seconds(5)) { done.withLock { $0 } })
            #expect(try pair.connect(pair.primaryDirectory).scalar("SELECT count(*) FROM t") == "1")
            // ALTER SYSTEM: it survives a restart.
            let autoConf = try String(contentsOfFile: pair.primaryDirectory + "/postgresql.auto.conf", encoding: .utf8)
            #expect(autoConf.contains("synchronous_standby_names = ''"))
            // A standby refuses, and nothing changes.
            let standby = pair.controller(pair.standbyDirectory)
            let refusal = #expect(throws: DatabaseError.self) { try standby.setSynchronousStandbyNames("") }
            #expect(refusal?.code == .notPrimary)
        }
    }
}
