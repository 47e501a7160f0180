// One rsync client process: spawned in its own process group with the password on its
// stdin and stdout+stderr on a pipe; reaped off the event loop; killed as a group.
import DBusKit
import FileSync
#if canImport(Glibc)
import Glibc
import SystemSupport
#endif

struct RsyncProcess {
    /// The process ID, which is also its process group.
    let pid: pid_t

    /// The most output kept (the tail): enough for rsync's errors and --stats.
    static let outputLimit = 16 * 1024

    /// Starts `argv` (argv[0] the absolute path of rsync) with `password` on its stdin.
    /// Returns what went wrong instead when it cannot be started.
    static func spawn(_ argv: [String], password: String) -> Result<(RsyncProcess, Int32), SpawnFailure> {
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        // pipe2(2) is not visible to Swift (_GNU_SOURCE): pipe, then FD_CLOEXEC. This thread is
        // the only one that starts processes, so no other child can inherit them meanwhile.
        guard pipe(&input) == 0 else { return .failure(SpawnFailure("pipe: \(String(cString: strerror(errno)))")) }
        guard pipe(&output) == 0 else {
            let reason = String(cString: strerror(errno))
            close(input[0]); close(input[1])
            return .failure(SpawnFailure("pipe: \(reason)"))
        }
        for fd in input + output { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 leaves the new descriptors without FD_CLOEXEC; every other descriptor of this
        // process is close-on-exec (the bus, the signalfd, the lock, these pipes).
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, output[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The loop blocks SIGTERM & co. for its signalfd: the child gets a clean mask and
        // default dispositions, and its own process group (so that a kill reaches its helpers).
        resetSignals(of: &attributes, newProcessGroup: true)
        var cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cArgv { free(p) } }
        // English messages (they go into the status and the journal), nothing inherited.
        var environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), strdup("LC_ALL=C"), nil]
        defer { for p in environment { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, &cArgv, &environment)
        close(input[0])
        close(output[1])
        guard spawned == 0 else {
            close(input[1])
            close(output[0])
            return .failure(SpawnFailure("cannot run \(argv[0]): \(String(cString: strerror(spawned)))"))
        }
        // A few bytes into an empty pipe: never blocks. (SIGPIPE is ignored by the puller,
        // should rsync be gone already.)
        let bytes = Array((password + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(input[1], $0.baseAddress, $0.count) }
        close(input[1])
        return .success((RsyncProcess(pid: pid), output[0]))
    }

    /// Blocking, for a worker thread: reads the output until EOF (keeping the tail), closes
    /// it, then waits for the process.
    static func collect(pid: pid_t, outputFD: Int32) -> RsyncResult {
        var kept: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(outputFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            kept.append(contentsOf: chunk[0..<n])
            if kept.count > 2 * outputLimit { kept.removeFirst(kept.count - outputLimit) }
        }
        close(outputFD)
        if kept.count > outputLimit { kept.removeFirst(kept.count - outputLimit) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return RsyncResult(termination: .exited(127), output: "waitpid: \(String(cString: strerror(errno)))") }
        }
        return RsyncResult(waitStatus: status, output: String(decoding: kept, as: UTF8.self))
    }

    /// Sends `signal` to the whole process group.
    func kill(_ signal: Int32) {
        _ = Glibc.kill(-pid, signal)
    }
}

struct SpawnFailure: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}
