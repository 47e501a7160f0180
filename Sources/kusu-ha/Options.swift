import ArgumentParser
import ClusterAPI
import ClusterCore
import HAClient
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// Options every command accepts.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The configuration file; read only for names, if present (the client works without it).",
        valueName: "path"))
    var config: String = Paths.configuration

    @Flag(name: .long, help: "Do not let polkit ask for a password: fail at once if not authorized.")
    var noAskPassword = false

    /// Connects to the system bus; failures become one line and exit status 4.
    func connect() throws -> ClusterClient {
        do {
            return try ClusterClient(interactive: !noAskPassword)
        } catch {
            throw fail(error)
        }
    }

    /// (cluster, node) from the configuration file, if it is there and valid.
    func configuredNames() -> (String?, String?) {
        guard let c = configuration() else { return (nil, nil) }
        return (c.cluster.name, c.cluster.node)
    }

    /// The configuration file, if it is readable and valid.
    func configuration() -> Configuration? {
        guard access(config, R_OK) == 0 else { return nil }
        return try? Configuration.load(path: config)
    }

    /// The peer's node name from the configuration file.
    func configuredPeer() -> String? { configuration()?.peerNode.name }
}

/// "on" or "off".
enum Switch: String, ExpressibleByArgument, CaseIterable {
    case on, off
    var bool: Bool { self == .on }
}

/// Prints the error's line on stderr and returns the exit status to throw.
func fail(_ error: ClientError) -> ExitCode {
    printError("kusu-ha: \(error.line)")
    return ExitCode(error.exitStatus.rawValue)
}

/// Runs a mutating call and prints "<what>: done in N ms" (or the error's line).
func perform(_ what: String, _ options: GlobalOptions, _ body: (ClusterClient) throws(ClientError) -> Void) throws {
    let client = try options.connect()
    let start = monotonicNow()
    do {
        try body(client)
    } catch {
        throw fail(error)
    }
    let ms = (monotonicNow() - start) / 1_000_000
    print("\(what): done in \(ms) ms")
}

func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The invoking user's name (for the default release reason).
func userName() -> String {
    if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
    return "uid \(getuid())"
}

/// "2025-05-01 12:00:00.123" in local time.
func timestamp() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = ts.tv_sec
    var tmv = tm()
    localtime_r(&t, &tmv)
    func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
    let ms = Int(ts.tv_nsec / 1_000_000)
    let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
    return "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday)) "
        + "\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)).\(msText)"
}
