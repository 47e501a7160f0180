// Fencing: before an automatic takeover, the configured `[fencing] command` must succeed
// (e.g. fence_ipmilan powering the peer off), so that a peer that only looks dead cannot
// keep writing. Run off the event loop with a deadline; exit status 0 is success.
import DBusKit
import Glibc
import SystemSupport

enum Fencing {
    /// Runs `command` (argv; the first element an absolute path), stdin/stdout/stderr on
    /// /dev/null, killing it after `timeout`. Returns nil on success, else what went wrong.
    static func run(_ command: [String], timeout: Duration) -> String? {
        guard let program = command.first, program.hasPrefix("/") else { return "the fencing command must be an absolute path" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd: Int32 in 0...2 { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        resetSignals(of: &attributes, newProcessGroup: false)
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nil]
        defer { for p in environment { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program, &actions, &attributes, &argv, &environment)
        guard spawned == 0 else { return "cannot run \(program): \(String(cString: strerror(spawned)))" }
        let deadline = EventLoop.clockNow + timeout
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return "waitpid: \(String(cString: strerror(errno)))" }
            if EventLoop.clockNow >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return "\(program) did not finish within \(timeout)"
            }
            usleep(10_000)
        }
        // WIFEXITED / WEXITSTATUS are macros: decode the wait status by hand.
        if status & 0x7f == 0 {
            let code = (status >> 8) & 0xff
            return code == 0 ? nil : "\(program) exited with status \(code)"
        }
        return "\(program) was killed by signal \(status & 0x7f)"
    }
}
