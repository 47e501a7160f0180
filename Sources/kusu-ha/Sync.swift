// kusu-ha sync serve|pull|status: the KUSU file trees ([[sync]]) kept on the standby.
import ArgumentParser
import ClusterAPI
import ClusterCore
import FileSync
import HAClient
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

extension KusuHA {
    struct Sync: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Keep the KUSU file trees ([[sync]]) on the standby.",
            discussion: """
                Each [[sync]] entry of kusu-ha.toml names a directory tree (package repositories, \
                TFTP boot images, the config-manager tree) that the standby node keeps a copy of. \
                The copy is made by rsync: on each node "kusu-ha sync serve" \
                (kusu-ha-rsyncd.service) offers the node's trees read-only to its peer, and \
                "kusu-ha sync pull" (kusu-ha-sync.service) pulls them from the peer while this \
                node is the standby and the peer is the active node. The standby only ever pulls: \
                nothing is ever written onto the active node, and pulling pauses while this node \
                is active, taking over or releasing, and while the peer is dead or not active.

                The connection runs over the heartbeat links (the [[nodes]] addresses, in link \
                order), is accepted only from the peer's heartbeat addresses, and is authenticated \
                with a password derived from the heartbeat key (cluster.auth_key_file), so there \
                is no second secret to distribute.

                On failover the new active node serves the data it has; "kusu-ha sync status" \
                says how old it is.
                """,
            subcommands: [Serve.self, Pull.self, Status.self])
    }
}

extension KusuHA.Sync {
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Offer this node's trees to the peer: write rsyncd.conf, then run rsync --daemon.",
            discussion: """
                Writes rsyncd.conf and the secrets file into the runtime directory (--runtime-directory, \
                else $RUNTIME_DIRECTORY as set by systemd's RuntimeDirectory=, else \
                /run/kusu-ha-rsyncd) and replaces itself with "rsync --daemon --no-detach". This is \
                the ExecStart of kusu-ha-rsyncd.service.

                The daemon listens on TCP port 873 on every address and has one module per [[sync]] \
                entry, named kusu-0, kusu-1, ... in the order of the file: read-only, not listed, \
                chrooted into the tree, reading files as root so that every file can be sent, open \
                only to the peer's heartbeat addresses ("hosts allow"; every other host is refused) \
                and to user kusu-sync, whose password (at least SHA-256 challenge-response) is \
                HMAC-SHA256 of the heartbeat key and the text "kusu-ha rsync v1", in hexadecimal, \
                cut to 32 characters. The secrets file has mode 0600. The daemon logs to syslog, \
                under the tag kusu-ha-rsyncd.

                Entries with pull = false are served too: "pull" decides only whether this node \
                pulls the tree. With no [[sync]] entry there is nothing to serve: the command says \
                so and exits with status 0.

                EXIT STATUS (on success the process becomes rsync)
                  0   nothing to serve, or --print-config
                  1   the configuration, the heartbeat key or the runtime directory
                      is unusable, or rsync cannot be run
                  64  usage error
                """)

        @OptionGroup var options: SyncOptions

        @Option(name: .long, help: ArgumentHelp(
            "Where to write rsyncd.conf and the secrets file (default: $RUNTIME_DIRECTORY, else /run/kusu-ha-rsyncd).",
            valueName: "dir"))
        var runtimeDirectory: String?

        @Flag(name: .long, help: "Print rsyncd.conf (without the secret) and exit.")
        var printConfig = false

        func run() throws {
            let configuration = try loadSyncConfiguration(options.config)
            let directory = runtimeDirectory ?? environmentRuntimeDirectory() ?? FileSyncPaths.daemonRuntimeDirectory
            let daemon = RsyncDaemonConfiguration(configuration: configuration, runtimeDirectory: directory)
            if printConfig {
                print(daemon.text, terminator: "")
                return
            }
            guard !configuration.sync.isEmpty else {
                printError("kusu-ha: \(options.config) has no [[sync]] entry: nothing to serve")
                return
            }
            let secret = try loadSyncSecret(configuration)
            try makeDirectory(directory, mode: 0o700)
            do {
                try Files.replace(daemon.secretsFile, with: Array(secret.secretsFileText.utf8), mode: 0o600)
                _ = chmod(daemon.secretsFile, 0o600)
                try Files.replace(directory + "/rsyncd.conf", with: Array(daemon.text.utf8), mode: 0o644)
            } catch {
                throw syncFailure("cannot write the daemon's files: \(error)")
            }
            for tree in configuration.sync {
                var info = stat()
                if stat(tree.path, &info) != 0 || (info.st_mode & S_IFMT) != S_IFDIR {
                    printError("kusu-ha: warning: \(tree.path) is not a directory here: the peer's pulls of it fail until it exists")
                }
            }
            let program = FileSyncPaths.rsync
            guard access(program, X_OK) == 0 else {
                throw syncFailure("\(program) is missing: install the Debian package rsync")
            }
            let argv = [program, "--daemon", "--no-detach", "--config=\(directory)/rsyncd.conf"]
            var cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
            execv(program, &cArgv)
            let reason = String(cString: strerror(errno))
            for p in cArgv { free(p) }
            throw syncFailure("cannot run \(program): \(reason)")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show how recent this node's copy of each tree is.",
            discussion: """
                Reads the status file of the puller (/run/kusu-ha-sync/status, written by \
                kusu-ha-sync.service) and prints one line per [[sync]] tree: "synchronised 12 s \
                ago"; "failed 3 s ago: ERROR; last synchronised 5 min ago"; "paused: REASON; last \
                synchronised 2 h ago" (on the active node: "paused: this node is active: it is the \
                source, not a copy"); "not synchronised yet"; "not pulled here (pull = false)". \
                The age of the last successful pull is the age of the copy: after a failover it \
                says how old the data is that the new active node serves.

                With --json, prints one object: now_usec and trees [{path, state (pending, \
                synchronised, failed, paused, not-pulled), last_success_usec, last_attempt_usec, \
                since_usec, message}]; times are CLOCK_REALTIME microseconds, 0 = never.

                EXIT STATUS
                  0   the status was shown (whatever it says)
                  1   the status file cannot be read or is not valid
                  4   there is no status file: kusu-ha-sync.service has not run since boot
                  64  usage error
                """)

        @Option(name: .long, help: ArgumentHelp("The puller's status file.", valueName: "path"))
        var statusFile: String = FileSyncPaths.statusFile

        @Flag(name: .long, help: "Print JSON instead of text.")
        var json = false

        func run() throws {
            let status: FileSyncStatus
            do {
                status = try FileSyncStatus.read(path: statusFile)
            } catch {
                if error.missing {
                    throw syncFailure("no file-tree status (\(statusFile)): kusu-ha-sync.service has not run since boot",
                                      status: .unreachable)
                }
                throw syncFailure("\(error)")
            }
            let now = realtimeUSec()
            if json {
                print(Self.json(status, now: now).rendered())
                return
            }
            if status.trees.isEmpty {
                print("no [[sync]] tree")
                return
            }
            let width = status.trees.map(\.path.count).max() ?? 0
            for tree in status.trees {
                let padding = String(repeating: " ", count: width - tree.path.count + 2)
                print(tree.path + padding + tree.describe(now: now))
            }
        }

        static func json(_ status: FileSyncStatus, now: UInt64) -> JSON {
            .object([
                ("now_usec", .number(now)),
                ("trees", .array(status.trees.map { tree in
                    .object([
                        ("path", .string(tree.path)),
                        ("state", .string(tree.state.rawValue)),
                        ("last_success_usec", .number(tree.lastSuccessUSec)),
                        ("last_attempt_usec", .number(tree.lastAttemptUSec)),
                        ("since_usec", .number(tree.sinceUSec)),
                        ("message", .string(tree.message)),
                    ])
                })),
            ])
        }
    }
}

// MARK: Shared by the sync commands

/// The options of "sync serve" and "sync pull", which need the configuration.
struct SyncOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The configuration file: [[sync]], [[nodes]] and cluster.auth_key_file.", valueName: "path"))
    var config: String = Paths.configuration
}

/// One line on stderr ("kusu-ha: ...") and the exit status to throw.
func syncFailure(_ line: String, status: ExitStatus = .failed) -> ExitCode {
    printError("kusu-ha: \(line)")
    return ExitCode(status.rawValue)
}

/// The configuration, or exit status 1 with the file, the line and what is wrong.
func loadSyncConfiguration(_ path: String) throws -> Configuration {
    do {
        let configuration = try Configuration.load(path: path)
        for tree in configuration.sync {
            if let why = RsyncDaemonConfiguration.unsupportedPath(tree.path) { throw syncFailure("\(path): \(why)") }
        }
        return configuration
    } catch let error as ConfigError {
        throw syncFailure("\(error)")
    }
}

/// The rsync password, derived from the heartbeat key.
func loadSyncSecret(_ configuration: Configuration) throws -> SyncSecret {
    do {
        _ = try configuration.loadHeartbeatKey()  // the same checks and messages as kusu-hbd
        return SyncSecret(heartbeatKey: try Files.read(configuration.cluster.authKeyFile, limit: 4096))
    } catch let error as ConfigError {
        throw syncFailure("\(error)")
    } catch {
        throw syncFailure("cannot read the heartbeat key: \(error)")
    }
}

/// The first directory of $RUNTIME_DIRECTORY (systemd separates several with ':').
func environmentRuntimeDirectory() -> String? {
    guard let value = getenv("RUNTIME_DIRECTORY").map({ String(cString: $0) }), !value.isEmpty else { return nil }
    return value.split(separator: ":").first.map(String.init)
}

/// mkdir, where it is missing (the parent must exist).
func makeDirectory(_ path: String, mode: mode_t) throws {
    if mkdir(path, mode) != 0 && errno != EEXIST {
        throw syncFailure("cannot create \(path): \(String(cString: strerror(errno)))")
    }
}
