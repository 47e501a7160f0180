import ClusterCore
import Effector
import Foundation
import Testing

/// Against real PostgreSQL 15 servers (a primary and a streaming standby per test), as root.
@Suite(.serialized, .enabled(if: canRunPostgres, "needs root and PostgreSQL 15 in /usr/lib/postgresql/15/bin"))
struct DatabaseControllerTests {
    @Test func statusOfPrimaryStandbyAndStoppedServer() throws {
        try withPostgresPair { pair in
            let primary = pair.controller(pair.primaryDirectory)
            let standby = pair.controller(pair.standbyDirectory)

            try pair.connect(pair.primaryDirectory).execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('one')")
            let primaryStatus = primary.status()
            #expect(primaryStatus.role == .primary)
            #expect(primaryStatus.lsn > 0)
            #expect(primaryStatus.timeline == 1)
            #expect(primaryStatus.replicationLagBytes < 1_048_576)

            // The standby replays up to the primary's position and streams.
            #expect(eventually { standby.status().lsn >= primaryStatus.lsn })
            let standbyStatus = standby.status()
            #expect(standbyStatus.role == .standby)
            #expect(standbyStatus.streaming)
            #expect(standbyStatus.timeline == 1)
            #expect(standbyStatus.replicationLagBytes < 65536)
            #expect(try pair.connect(pair.standbyDirectory).scalar("SELECT v FROM t") == "one")
            // Seen from the primary: one streaming standby, little behind (the standby reports its
            // replay position every wal_receiver_status_interval, 10 s, so this is not exact).
            #expect(eventually { primary.status().streaming })
            #expect(primary.status().replicationLagBytes < 1_048_576)
            print("primary: \(primary.status())\nstandby: \(standby.status())")

            // The LSN we report is PostgreSQL's own.
            let text = try pair.connect(pair.primaryDirectory).scalar("SELECT pg_current_wal_lsn()::text")
            #expect(DatabaseController.parseLSN(try #require(text)).map { $0 >= primaryStatus.lsn } == true)

            // prepareStandby refuses a data directory whose server runs, and changes nothing.
            let autoConf = try String(contentsOfFile: pair.standbyDirectory + "/postgresql.auto.conf", encoding: .utf8)
            let refusal = #expect(throws: DatabaseError.self) {
                try StandbySetup.prepareStandby(
                    dataDirectory: pair.standbyDirectory, primaryConninfo: pair.replicationConninfo(pair.primaryDirectory),
                    applicationName: "b", rewind: true)
            }
            #expect(refusal?.code == .rejoinFailed)
            #expect(refusal?.message.contains("still running") == true)
            #expect(try String(contentsOfFile: pair.standbyDirectory + "/postgresql.auto.conf", encoding: .utf8) == autoConf)

            // A stopped server is down; so is a port where nothing ever listened.
            try pair.stop(pair.standbyDirectory)
            #expect(standby.status() == DatabaseStatus(role: .down))
            #expect(DatabaseController(settings: DatabaseSettings(socketDirectory: pair.root, port: 1)).status().role == .down)
            #expect(primary.status().role == .primary)

            // A primary that crashed reports no position (0); one stopped cleanly reports where
            // it ends: its shutdown checkpoint.
            try pair.stop(pair.primaryDirectory)
            #expect(primary.status() == DatabaseStatus(role: .down))
            try pair.start(pair.primaryDirectory)
            #expect(eventually { primary.status().role == .primary })
            let running = primary.status().lsn
            _ = try pair.asPostgres([postgresBin + "/pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", pair.primaryDirectory])
            let stopped = primary.status()
            #expect(stopped.role == .down)
            #expect(stopped.lsn >= running && stopped.lsn > 0)
            #expect(stopped.lsn == (try StandbySetup.finalCheckpointLSN(dataDirectory: pair.primaryDirectory)))
        }
    }

    @Test func promoteRefusesAPrimaryAndChangesNothing() throws {
        try withPostgresPair { pair in
            let primary = pair.controller(pair.primaryDirectory)
            let before = primary.status()
            let error = #expect(throws: DatabaseError.self) {
                try primary.promote(ignoreLag: true, timeout: .seconds(5))
            }
            #expect(error?.code == .notStandby)
            print("refusal: \(error?.message ?? "-")")
            let after = primary.status()
            #expect(after.role == .primary)
            #expect(after.timeline == before.timeline)
            #expect(pair.controller(pair.standbyDirectory).status().role == .standby)
        }
    }

    @Test func promoteAfterPrimaryCrashThenRejoinOldPrimary() throws {
        try withPostgresPair { pair in
            let oldPrimary = pair.controller(pair.primaryDirectory)
            let newPrimary = pair.controller(pair.standbyDirectory)
            let primaryConnection = try pair.connect(pair.primaryDirectory)
            try primaryConnection.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('before crash')")
            let written = oldPrimary.status().lsn
            #expect(eventually { newPrimary.status().lsn >= written })

            try pair.stop(pair.primaryDirectory)
            #expect(oldPrimary.status().role == .down)

            // Promote.
            let clock = ContinuousClock()
            let started = clock.now
            let promoted = try newPrimary.promote(ignoreLag: false, timeout: .seconds(30))
            let promoteTime = clock.now - started
            print("promote took \(milliseconds(promoteTime)) ms: \(promoted)")
            #expect(promoted.role == .primary)
            #expect(promoted.timeline == 2)
            let connection = try pair.connect(pair.standbyDirectory)
            try connection.query("INSERT INTO t VALUES ($1)", ["after promote"])
            #expect(try connection.scalar("SELECT count(*) FROM t") == "2")
            #expect(newPrimary.status().timeline == 2)
            // Promoting again is refused: it is a primary now.
            #expect(throws: DatabaseError(.notStandby, "the local PostgreSQL is already a primary (not in recovery): nothing to promote")) {
                try newPrimary.promote(ignoreLag: false, timeout: .seconds(5))
            }

            // Rejoin the old primary as a standby of the new one (pg_rewind).
            let rejoinStarted = clock.now
            try StandbySetup.prepareStandby(
                dataDirectory: pair.primaryDirectory, primaryConninfo: pair.replicationConninfo(pair.standbyDirectory),
                applicationName: "node-a", rewind: true)
            let prepared = clock.now - rejoinStarted
            try pair.start(pair.primaryDirectory)
            let streaming = try StandbySetup.waitUntilStreaming(oldPrimary, timeout: .seconds(60))
            let rejoinTime = clock.now - rejoinStarted
            print("rejoin took \(milliseconds(rejoinTime)) ms (pg_rewind + configuration \(milliseconds(prepared)) ms): \(streaming)")
            #expect(streaming.role == .standby)
            #expect(streaming.streaming)
            #expect(streaming.timeline == 2)

            // The configuration we wrote: standby.signal, one primary_conninfo naming this node, owned by postgres, 0600.
            let directory = pair.primaryDirectory
            #expect(FileManager.default.fileExists(atPath: directory + "/standby.signal"))
            let autoConf = try String(contentsOfFile: directory + "/postgresql.auto.conf", encoding: .utf8)
            let lines = autoConf.split(separator: "\n").filter { $0.hasPrefix("primary_conninfo") }
            #expect(lines.count == 1)
            #expect(lines.first?.contains("application_name=''node-a''") == true)
            #expect(lines.first?.contains("port=''\(pair.standbyPort)''") == true)
            for file in ["postgresql.auto.conf", "standby.signal"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + file)
                #expect(attributes[.ownerAccountName] as? String == "postgres", "\(file)")
                #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600, "\(file)")
            }
            #expect(!FileManager.default.fileExists(atPath: directory + "/postgresql.auto.conf.kusu-tmp"))

            // New writes reach the rejoined standby, and it names itself node-a to the primary.
            try connection.query("INSERT INTO t VALUES ($1)", ["after rejoin"])
            let rejoined = try pair.connect(pair.primaryDirectory)
            #expect(eventually { (try? rejoined.scalar("SELECT count(*) FROM t WHERE v = 'after rejoin'")) == "1" })
            #expect(try rejoined.scalar("SELECT string_agg(v, ',' ORDER BY v) FROM t") == "after promote,after rejoin,before crash")
            #expect(try connection.scalar("SELECT application_name FROM pg_stat_replication") == "node-a")
            #expect(eventually { newPrimary.status().streaming })
        }
    }

    @Test func promoteRefusesALaggingStandbyUnlessTold() throws {
        try withPostgresPair { pair in
            let standby = pair.controller(pair.standbyDirectory, maxLagBytes: 0)
            let standbyConnection = try pair.connect(pair.standbyDirectory)
            try standbyConnection.query("SELECT pg_wal_replay_pause()")
            let primaryConnection = try pair.connect(pair.primaryDirectory)
            try primaryConnection.query("CREATE TABLE big AS SELECT g FROM generate_series(1, 10000) AS g")
            let written = try #require(try primaryConnection.scalar("SELECT pg_current_wal_lsn()::text"))
            // Received (not only announced by the primary), but not replayed: promotion replays it.
            #expect(eventually {
                (try? standbyConnection.scalar("SELECT pg_last_wal_receive_lsn() >= $1::pg_lsn", [written])) == "t"
            })
            #expect(eventually { standby.status().replicationLagBytes > 0 })
            let lagging = standby.status()
            print("paused standby: \(lagging)")

            let error = #expect(throws: DatabaseError.self) {
                try standby.promote(ignoreLag: false, timeout: .seconds(10))
            }
            #expect(error?.code == .replicationLag)
            print("refusal: \(error?.message ?? "-")")
            #expect(try standbyConnection.scalar("SELECT pg_is_in_recovery()") == "t")
            #expect(standby.status().role == .standby)

            let clock = ContinuousClock()
            let started = clock.now
            let promoted = try standby.promote(ignoreLag: true, timeout: .seconds(30))
            print("promote of a paused, lagging standby took \(milliseconds(clock.now - started)) ms: \(promoted)")
            #expect(promoted.role == .primary)
            #expect(promoted.timeline == 2)
            // Everything it had received was replayed before it opened for writes.
            let connection = try pair.connect(pair.standbyDirectory)
            #expect(try connection.scalar("SELECT count(*) FROM big") == "10000")
            try connection.query("INSERT INTO big VALUES (0)")
        }
    }
}
