// Fencing: before an automatic takeover, the configured `[fencing] command` must succeed
// (e.g. fence_ipmilan powering the peer off), so that a peer that only looks dead cannot
// keep writing. Run off the event loop with a deadline; exit status 0 is success.

enum Fencing {
    /// Runs `command` (argv; the first element an absolute path) as a check command runs
    /// (CommandRun: stdin on /dev/null, only PATH in its environment, its process group killed
    /// after `timeout`). Returns nil on success, else what went wrong, with the first line of
    /// its output. Blocks: call it on a worker thread.
    static func run(_ command: [String], timeout: Duration) -> String? {
        switch CommandRun.run(command, timeout: timeout, control: CommandControl()) {
        case .success: nil
        case .failure(let failure): failure.message
        }
    }
}
