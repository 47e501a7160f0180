// Commands run off the loop, with a deadline: a `[[checks]]` entry of kind `command`
// (CommandProbe) and the `[fencing] command` (Fencing). posix_spawn in a process group of its
// own, killed as a whole at the timeout; stdin /dev/null, stdout and stderr captured (the first
// KiB) for the message; only PATH in the environment.
import DBusKit
import Glibc
import Synchronization
import SystemSupport

/// What the loop and a command's thread share: the order to kill the child, and its pid.
final class CommandControl: Sendable {
    let cancelled = Atomic<Bool>(false)
    let pid = Atomic<Int32>(0)
}

/// `.command`: runs the program off the loop; exit status 0 is success.
final class CommandProbe: CheckWork {
    let argv: [String]
    let timeout: Duration
    let loop: EventLoop
    let report: CheckProbe.Completion
    let control = CommandControl()

    init(argv: [String], timeout: Duration, loop: EventLoop, report: @escaping CheckProbe.Completion) {
        self.argv = argv
        self.timeout = timeout
        self.loop = loop
        self.report = report
    }

    deinit { stop() }

    func start() {
        let argv = argv
        let timeout = timeout
        let control = control
        do {
            try loop.perform(
                { CommandRun.run(argv, timeout: timeout, control: control) },
                completion: { [weak self] result in
                    guard let self, !self.control.cancelled.load(ordering: .acquiring) else { return }
                    self.report(result)
                })
        } catch {
            let program = argv.first ?? "the command"
            report(.failure(CheckFailure(message: "cannot start a thread for \(program): \(error)")))
        }
    }

    /// The thread notices within ~5 ms, kills the process group and reaps the child.
    func stop() {
        control.cancelled.store(true, ordering: .releasing)
    }

    func timeoutMessage(_ timeout: Duration) -> String {
        "\(argv.first ?? "the command") did not finish within \(CheckProbe.describe(timeout))"
    }
}

/// The blocking part of a command check, on its own thread.
enum CommandRun {
    static let outputLimit = 1024

    /// posix_spawn in a new process group, stdin /dev/null, stdout and stderr into a socket
    /// pair (of which the first 1 KiB is kept), environment only PATH; waitpid polled every
    /// ~5 ms; at the timeout or when cancelled, SIGKILL to the whole group.
    static func run(_ argv: [String], timeout: Duration, control: CommandControl) -> Result<Void, CheckFailure> {
        guard let program = argv.first, program.hasPrefix("/") else {
            return .failure(CheckFailure(message: "the command must be an absolute path"))
        }
        // A socket pair rather than pipe2(2), which Swift's Glibc module does not declare: created
        // close-on-exec atomically, so no child spawned meanwhile by another thread keeps our write end.
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            return .failure(CheckFailure(message: "cannot run \(program): socketpair: \(errorText(errno))"))
        }
        defer { close(fds[0]) }
        var pid: pid_t = 0
        let spawned = spawn(argv, output: fds[1], pid: &pid)
        close(fds[1])
        guard spawned == 0 else {
            return .failure(CheckFailure(message: "cannot run \(program): \(errorText(spawned))"))
        }
        control.pid.store(pid, ordering: .releasing)

        let deadline = EventLoop.clockNow + timeout
        var output: [UInt8] = []
        var outputOpen = true
        var status: Int32 = 0
        while true {
            if outputOpen { outputOpen = drain(fds[0], into: &output) }
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0 && errno != EINTR {
                // ECHILD: reaped elsewhere; the pid may be reused, so nothing is killed.
                return .failure(CheckFailure(message: "cannot wait for \(program): \(errorText(errno))"))
            }
            if control.cancelled.load(ordering: .acquiring) || EventLoop.clockNow >= deadline {
                kill(-pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                let within = CheckProbe.describe(timeout)
                return .failure(CheckFailure(message: "\(program) did not finish within \(within)"))
            }
            // Wakes early for output; a negative fd makes it a plain 5 ms wait.
            var wait = pollfd(fd: outputOpen ? fds[0] : -1, events: Int16(POLLIN), revents: 0)
            _ = poll(&wait, 1, 5)
        }
        if outputOpen { _ = drain(fds[0], into: &output) }
        return verdict(program: program, status: status, output: output)
    }

    /// posix_spawn(2) of `argv`; returns its error number (0: spawned).
    private static func spawn(_ argv: [String], output: Int32, pid: inout pid_t) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        resetSignals(of: &attributes, newProcessGroup: true)
        var arguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in arguments { free(p) } }
        var environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nil]
        defer { for p in environment { free(p) } }
        return posix_spawn(&pid, argv[0], &actions, &attributes, &arguments, &environment)
    }

    /// Reads what is waiting, keeping the first `outputLimit` bytes and discarding the rest (a
    /// chatty command must not block on a full buffer). Returns false once the output is closed.
    private static func drain(_ fd: Int32, into output: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<16 {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { return false }
            if n < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK
            }
            output += chunk[0..<min(n, max(0, outputLimit - output.count))]
        }
        return true
    }

    /// Success for exit status 0; else the status or signal and the first line of output.
    static func verdict(program: String, status: Int32, output: [UInt8]) -> Result<Void, CheckFailure> {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros: decode the wait status by hand.
        let signal = status & 0x7f
        let code = (status >> 8) & 0xff
        if signal == 0 && code == 0 { return .success(()) }
        let name = signalName(signal).map { " (\($0))" } ?? ""
        let what = signal == 0 ? "exited with status \(code)" : "was killed by signal \(signal)\(name)"
        let line = firstLine(of: output)
        return .failure(CheckFailure(message: "\(program) \(what)\(line.isEmpty ? "" : ": \(line)")"))
    }

    /// The first non-blank line, trimmed, control characters as spaces.
    static func firstLine(of output: [UInt8]) -> String {
        let lines = output.split(separator: UInt8(ascii: "\n"))
        let cleaned = lines.lazy.map { line in
            String(decoding: line.map { $0 < 0x20 || $0 == 0x7F ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
        }
        let line = cleaned.first { $0.contains { $0 != " " } } ?? ""
        return String(line.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }

    static func signalName(_ signal: Int32) -> String? {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
            SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE",
            SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        ]
        return names[signal]
    }
}
