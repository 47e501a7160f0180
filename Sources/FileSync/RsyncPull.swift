// The rsync client command that pulls one tree from the peer's daemon, and what its exit
// status and output mean. Pull only: the peer's module is the source, the local tree the
// destination; nothing here ever names the peer as a destination.
public import ClusterCore

/// `rsync ... rsync://kusu-sync@PEER:873/kusu-<i>/ PATH/`: one pull of one tree over one link.
///
/// The options, and why:
/// - `--archive --numeric-ids`: contents, owners, groups, modes, times and symlinks as they
///   are on the active node (by number, as the chrooted daemon sends them);
///   `--no-devices`: device nodes are not copied (the puller does not hold CAP_MKNOD);
/// - `--delete-delay` (when `delete`): files gone on the active node go here too, after the
///   transfer; files matching `exclude` are neither copied nor deleted;
/// - `--delay-updates --partial-dir=.kusu-sync-partial`: each updated file is written
///   beside its directory and renamed into place at the end, so a half-copied file is never
///   seen under its name (an interrupted pull leaves the old file, and the partial one is
///   reused next time);
/// - `--mkpath`: a tree missing on this node is created;
/// - `--timeout`/`--contimeout`: a silent peer fails the pull instead of hanging it;
/// - `--address`: the connection leaves from this node's address on the same link, the
///   one the peer's `hosts allow` lists;
/// - `--password-file=-`: the password comes on standard input, never in a file or argv;
/// - `--stats --no-human-readable`: counts the puller logs.
public struct RsyncPullCommand: Sendable, Equatable {
    /// The partial directory inside each destination directory (see above).
    public static let partialDirectory = ".kusu-sync-partial"
    public static let defaultIOTimeout: Duration = .seconds(60)
    public static let defaultConnectTimeout: Duration = .seconds(5)

    public var tree: SyncTree
    public var index: Int
    public var peer: IPAddress
    /// This node's address on the same link (bound as the source of the connection).
    public var local: IPAddress?
    public var port: UInt16
    public var executable: String
    public var ioTimeout: Duration
    public var connectTimeout: Duration

    public init(tree: SyncTree, index: Int, peer: IPAddress, local: IPAddress? = nil,
                port: UInt16 = RsyncDaemonConfiguration.defaultPort, executable: String = FileSyncPaths.rsync,
                ioTimeout: Duration = RsyncPullCommand.defaultIOTimeout,
                connectTimeout: Duration = RsyncPullCommand.defaultConnectTimeout) {
        self.tree = tree
        self.index = index
        self.peer = peer
        self.local = local
        self.port = port
        self.executable = executable
        self.ioTimeout = ioTimeout
        self.connectTimeout = connectTimeout
    }

    /// The commands for tree `index`, one per link in link order: the peer's address on link
    /// k, bound to this node's address on link k.
    public static func perLink(tree: SyncTree, index: Int, configuration: Configuration) -> [RsyncPullCommand] {
        let locals = configuration.localNode.addresses
        return configuration.peerNode.addresses.enumerated().map { link, peer in
            RsyncPullCommand(tree: tree, index: index, peer: peer, local: link < locals.count ? locals[link] : nil)
        }
    }

    /// The source: the module on the peer, with a trailing slash (its contents).
    public var source: String {
        let host = peer.isIPv4 ? peer.description : "[\(peer)]"
        return "rsync://\(SyncSecret.user)@\(host):\(port)/\(SyncTree.moduleName(index: index))/"
    }

    /// The destination: the local tree, with a trailing slash.
    public var destination: String { tree.path == "/" ? "/" : tree.path + "/" }

    /// The whole argv, program first.
    public var arguments: [String] {
        var argv = [
            executable, "--archive", "--numeric-ids", "--no-devices",
            "--delay-updates", "--partial-dir=\(Self.partialDirectory)", "--mkpath",
        ]
        if tree.delete { argv.append("--delete-delay") }
        argv += [
            "--timeout=\(Self.seconds(ioTimeout))", "--contimeout=\(Self.seconds(connectTimeout))",
            "--no-motd", "--stats", "--no-human-readable", "--password-file=-",
        ]
        if let local { argv.append("--address=\(local)") }
        for pattern in tree.exclude { argv.append("--exclude=\(pattern)") }
        // Nothing after this is read as an option, whatever the path.
        argv += ["--", source, destination]
        return argv
    }

    /// Whole seconds, at least 1 (rsync reads 0 as "no timeout").
    static func seconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return max(1, seconds + (attoseconds > 0 ? 1 : 0))
    }
}

/// How one run of the rsync client ended.
public struct RsyncResult: Sendable, Equatable {
    public enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    public var termination: Termination
    /// stdout and stderr together (the tail, if it was long).
    public var output: String

    public init(termination: Termination, output: String) {
        self.termination = termination
        self.output = output
    }

    /// From a waitpid(2) status (WIFEXITED/WEXITSTATUS are macros Swift cannot import).
    public init(waitStatus: Int32, output: String) {
        let signal = waitStatus & 0x7F
        self.init(termination: signal == 0 ? .exited((waitStatus >> 8) & 0xFF) : .signalled(signal), output: output)
    }

    /// Success: exit status 0, or 24 ("some files vanished before they could be
    /// transferred": a live tree changed during the pull; everything else was copied).
    public var succeeded: Bool { termination == .exited(0) || termination == .exited(24) }

    /// Whether another link may do better: the connection could not be made or broke
    /// (socket I/O 10, daemon protocol 5, data stream 12, timeouts 30 and 35). Errors about
    /// files (23), the local disk (11) or a signal are the same on every link.
    public var worthAnotherLink: Bool {
        if case .exited(let code) = termination { return [5, 10, 12, 30, 35].contains(code) }
        return false
    }

    /// The statistics of `--stats`, when they were printed.
    public var statistics: RsyncStatistics? { RsyncStatistics(output: output) }

    /// The error in one line: what the daemon said (`@ERROR: ...`) or rsync's first error,
    /// and the exit status with rsync's words for it.
    public var errorSummary: String {
        let lines = output.split(whereSeparator: \.isNewline).map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
        var detail: String?
        if let line = lines.first(where: { $0.hasPrefix("@ERROR:") }) {
            detail = String(line.dropFirst("@ERROR:".count)).trimmingSpaces()
        } else if let line = lines.first(where: { $0.hasPrefix("rsync:") }) {
            var text = String(line.dropFirst("rsync:".count)).trimmingSpaces()
            // "[Receiver] failed to connect ..." → "failed to connect ..."
            if text.hasPrefix("["), let end = text.firstIndex(of: "]") {
                text = String(text[text.index(after: end)...]).trimmingSpaces()
            }
            detail = text
        }
        switch termination {
        case .signalled(let signal):
            return (detail.map { $0 + " " } ?? "") + "(rsync was killed by signal \(signal))"
        case .exited(let code):
            var meaning = Self.meaning(ofExitStatus: code)
            // "rsync error: error in socket IO (code 10) at clientserver.c(139) [Receiver=3.5.0]"
            if let line = lines.last(where: { $0.hasPrefix("rsync error:") }),
               let open = line.firstRange(of: " (code ") {
                meaning = String(line[line.index(line.startIndex, offsetBy: "rsync error:".count)..<open.lowerBound])
                    .trimmingSpaces()
            }
            let tail = "rsync exit status \(code)" + (meaning.isEmpty ? "" : ": \(meaning)")
            if let detail, !detail.isEmpty { return "\(detail) (\(tail))" }
            if let last = lines.last(where: { !$0.hasPrefix("rsync error:") && RsyncStatistics.field(of: $0) == nil }) {
                return "\(last) (\(tail))"
            }
            return tail
        }
    }

    /// rsync(1) EXIT VALUES.
    public static func meaning(ofExitStatus code: Int32) -> String {
        switch code {
        case 0: "success"
        case 1: "syntax or usage error"
        case 2: "protocol incompatibility"
        case 3: "errors selecting input/output files, dirs"
        case 4: "requested action not supported"
        case 5: "error starting client-server protocol"
        case 6: "daemon unable to append to log-file"
        case 10: "error in socket I/O"
        case 11: "error in file I/O"
        case 12: "error in rsync protocol data stream"
        case 13: "errors with program diagnostics"
        case 14: "error in IPC code"
        case 20: "received SIGUSR1 or SIGINT"
        case 21: "some error returned by waitpid()"
        case 22: "error allocating core memory buffers"
        case 23: "partial transfer due to error"
        case 24: "partial transfer due to vanished source files"
        case 25: "the --max-delete limit stopped deletions"
        case 30: "timeout in data send/receive"
        case 35: "timeout waiting for daemon connection"
        case 127: "rsync could not be run"
        default: ""
        }
    }
}

/// What `--stats --no-human-readable` reported.
public struct RsyncStatistics: Sendable, Equatable {
    /// "Number of regular files transferred"
    public var filesTransferred: UInt64
    /// "Number of deleted files" (absent without --delete: 0)
    public var filesDeleted: UInt64
    /// "Total transferred file size", in bytes
    public var bytesTransferred: UInt64

    public init(filesTransferred: UInt64, filesDeleted: UInt64, bytesTransferred: UInt64) {
        self.filesTransferred = filesTransferred
        self.filesDeleted = filesDeleted
        self.bytesTransferred = bytesTransferred
    }

    /// Nil unless the output has the "Number of regular files transferred" line.
    public init?(output: String) {
        var transferred: UInt64?
        var deleted: UInt64 = 0
        var bytes: UInt64 = 0
        for line in output.split(whereSeparator: \.isNewline) {
            guard let (name, value) = Self.field(of: String(line)) else { continue }
            switch name {
            case "Number of regular files transferred": transferred = value
            case "Number of deleted files": deleted = value
            case "Total transferred file size": bytes = value
            default: continue
            }
        }
        guard let transferred else { return nil }
        self.init(filesTransferred: transferred, filesDeleted: deleted, bytesTransferred: bytes)
    }

    /// "Name: 1234 ..." → ("Name", 1234); separators (",", ".") inside the number are skipped.
    static func field(of line: String) -> (String, UInt64)? {
        guard let colon = line.firstIndex(of: ":") else { return nil }
        let name = String(line[..<colon]).trimmingSpaces()
        guard name.hasPrefix("Number of") || name.hasPrefix("Total") else { return nil }
        var digits = ""
        for character in line[line.index(after: colon)...].drop(while: { $0 == " " }) {
            if character.isASCII, character.isNumber { digits.append(character) } else if character == "," || character == "." {
                continue
            } else {
                break
            }
        }
        guard let value = UInt64(digits) else { return nil }
        return (name, value)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return String(s)
    }
}
