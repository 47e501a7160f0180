import ClusterCore
import Effector
import Foundation

let postgresBin = "/usr/lib/postgresql/15/bin"
/// The server tests need root (peer map root → postgres, setpriv) and PostgreSQL 15's binaries.
let canRunPostgres = getuid() == 0 && FileManager.default.isExecutableFile(atPath: postgresBin + "/initdb")

struct FixtureError: Error, CustomStringConvertible {
    var description: String
}

/// A throw-away primary and streaming standby of PostgreSQL 15, Unix sockets only, in a fresh
/// directory under /tmp owned by postgres (short, so the socket path fits, and traversable by
/// postgres whatever TMPDIR is). Use through `withPostgresPair`, which always cleans up.
final class PostgresPair {
    let root: String
    let primaryDirectory: String
    let standbyDirectory: String
    let primaryPort: UInt16
    let standbyPort: UInt16

    init() throws {
        var template = Array("/tmp/kusu-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw FixtureError(description: "mkdtemp failed") }
        root = String(cString: made)
        primaryDirectory = root + "/a"
        standbyDirectory = root + "/b"
        let base = UInt16(55432 + Int.random(in: 0..<1000) * 2)
        primaryPort = base
        standbyPort = base + 1
    }

    func settings(_ directory: String, maxLagBytes: UInt64 = 1_048_576) -> DatabaseSettings {
        DatabaseSettings(
            unit: "none", socketDirectory: root, port: directory == primaryDirectory ? primaryPort : standbyPort,
            dataDirectory: directory, user: "postgres", maxLagBytes: maxLagBytes)
    }

    func controller(_ directory: String, maxLagBytes: UInt64 = 1_048_576) -> DatabaseController {
        DatabaseController(settings: settings(directory, maxLagBytes: maxLagBytes))
    }

    /// A connection to the server of `directory`, for the test's own SQL.
    func connect(_ directory: String) throws -> PostgresConnection {
        try PostgresConnection(conninfo: controller(directory).conninfo)
    }

    /// The conninfo a standby uses to reach the server of `directory`.
    func replicationConninfo(_ directory: String) -> String {
        PostgresConnection.conninfo([("host", root), ("port", String(settings(directory).port)), ("user", "postgres")])
    }

    func setUp() throws {
        try run(["/bin/chown", "postgres:postgres", root])
        try asPostgres([postgresBin + "/initdb", "-D", primaryDirectory, "-U", "postgres", "--auth-local=peer", "-E", "UTF8", "--no-instructions"])
        let conf = """

            # kusu-ha test fixture
            listen_addresses = ''
            unix_socket_directories = '\(root)'
            wal_level = replica
            wal_log_hints = on
            wal_keep_size = '128MB'
            max_wal_senders = 10
            hot_standby = on
            wal_retrieve_retry_interval = '200ms'
            shared_buffers = '16MB'
            max_connections = 20

            """
        try append(conf, to: primaryDirectory + "/postgresql.conf")
        try overwrite("""
            local   all           all   peer map=kusu
            local   replication   all   peer map=kusu

            """, at: primaryDirectory + "/pg_hba.conf")
        try overwrite("kusu root postgres\nkusu postgres postgres\n", at: primaryDirectory + "/pg_ident.conf")
        try start(primaryDirectory)
        try asPostgres([postgresBin + "/pg_basebackup", "-D", standbyDirectory, "-R", "-X", "stream", "-c", "fast",
                        "-d", replicationConninfo(primaryDirectory)])
        try start(standbyDirectory)
    }

    func start(_ directory: String) throws {
        let port = settings(directory).port
        try asPostgres([postgresBin + "/pg_ctl", "start", "-w", "-t", "60", "-D", directory, "-l", directory + ".log", "-o", "-p \(port)"])
    }

    /// `pg_ctl stop -m immediate` (a crash, as far as PostgreSQL is concerned) of a server we started.
    func stop(_ directory: String) throws {
        try asPostgres([postgresBin + "/pg_ctl", "stop", "-w", "-t", "60", "-m", "immediate", "-D", directory])
    }

    func cleanUp() {
        for directory in [primaryDirectory, standbyDirectory]
        where FileManager.default.fileExists(atPath: directory + "/postmaster.pid") {
            try? stop(directory)
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    func logs() -> String {
        [primaryDirectory, standbyDirectory].map { directory in
            let text = (try? String(contentsOfFile: directory + ".log", encoding: .utf8)) ?? "(no log)"
            return "---- \(directory).log (last lines)\n" + text.split(separator: "\n").suffix(25).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    // MARK: helpers

    @discardableResult
    func asPostgres(_ command: [String]) throws -> String {
        try run(["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + command)
    }

    /// Runs `command` with its output in a file and waits for it (posix_spawn + waitpid: Foundation's
    /// Process never notices the end of a `pg_ctl start`, whose postmaster inherits its descriptors).
    @discardableResult
    func run(_ command: [String]) throws -> String {
        let outputPath = root + "/.command-output"
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
        let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, nil, argv, envp)
        guard spawned == 0 else { throw FixtureError(description: "cannot run \(command[0]): \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw FixtureError(description: "\(command.joined(separator: " ")) failed (wait status \(status)): \(text)")
        }
        return text
    }

    private func append(_ text: String, to path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    private func overwrite(_ text: String, at path: String) throws {
        // Keep the file (owner postgres, mode 0600): truncate and write in place.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(text.utf8))
    }
}

/// Creates a primary and a streaming standby, runs `body`, and always stops both servers and
/// removes their directory. Prints the servers' logs when `body` throws.
func withPostgresPair(_ body: (PostgresPair) throws -> Void) throws {
    let pair = try PostgresPair()
    defer { pair.cleanUp() }
    do {
        try pair.setUp()
        let standby = try StandbySetup.waitUntilStreaming(pair.controller(pair.standbyDirectory), timeout: .seconds(60))
        guard standby.role == .standby else { throw FixtureError(description: "standby not streaming: \(standby)") }
        try body(pair)
    } catch {
        print("PostgreSQL test failed: \(error)\n\(pair.logs())")
        throw error
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
func eventually(_ timeout: Duration = .seconds(10), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

func milliseconds(_ duration: Duration) -> Int {
    Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
}
