import ClusterCore
import DBusKit
import Glibc
import Testing

@testable import Monitor

// The probes of `[[checks]]` against real sockets on loopback (127.0.0.1, and ::1 once) and
// real commands. Each test has its own event loop; the test servers are driven by it too.

private let local4 = IPAddress.v4(127, 0, 0, 1)
private let local6 = IPAddress("::1")!

/// The probes, grouped by kind.
@Suite struct CheckProbeTests {}

extension CheckProbeTests {
    @Suite struct HTTP {
        @Test func expectedStatusIsASuccessAndTheRequestIsWellFormed() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
            let run = try runProbe(httpCheck(port: server.port, path: "/index.txt?x=1"), on: loop)
            #expect(run.succeeded)
            #expect(run.calls == 1 && !run.calledInsideStart)
            let request =
                "GET /index.txt?x=1 HTTP/1.0\r\nHost: 127.0.0.1:\(server.port)\r\n"
                + "User-Agent: kusu-ha\r\nConnection: close\r\n\r\n"
            #expect(server.requests == [request])
        }

        @Test func wrongStatusNamesItAndTheExpectedOne() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .answer("HTTP/1.0 503 Service Unavailable\r\n\r\n"))
            let run = try runProbe(httpCheck(port: server.port, path: "/index.txt"), on: loop)
            #expect(run.failure == "HTTP 503 from http://127.0.0.1:\(server.port)/index.txt (expected 200)")
            #expect(run.calls == 1 && !run.calledInsideStart)
        }

        @Test func anExpectedNon200StatusIsASuccess() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .answer("HTTP/1.1 204 No Content\r\n\r\n"))
            #expect(try runProbe(httpCheck(port: server.port, expect: 204), on: loop).succeeded)
        }

        @Test func aMalformedStatusLineIsAFailure() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .answer("SSH-2.0-OpenSSH_9.2\r\n"))
            let run = try runProbe(httpCheck(port: server.port), on: loop)
            let url = "http://127.0.0.1:\(server.port)/"
            #expect(run.failure == "malformed HTTP status line from \(url): \"SSH-2.0-OpenSSH_9.2\"")
        }

        @Test func atMost4KiBAreReadForTheStatusLine() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .answer(String(repeating: "x", count: 5000)))
            let run = try runProbe(httpCheck(port: server.port), on: loop)
            #expect(run.failure == "no HTTP status line in the first 4096 bytes from http://127.0.0.1:\(server.port)/")
        }

        @Test func aServerClosingWithoutAnAnswerIsAFailure() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .answer(""))
            let run = try runProbe(httpCheck(port: server.port), on: loop)
            #expect(run.failure == "127.0.0.1:\(server.port) closed the connection without answering")
        }

        @Test func aServerThatNeverAnswersTimesOut() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .silent)
            let run = try runProbe(httpCheck(port: server.port, timeout: .milliseconds(300)), on: loop)
            #expect(run.failure == "no answer from http://127.0.0.1:\(server.port)/ within 300 ms")
            #expect(run.elapsed >= .milliseconds(290) && run.elapsed < .milliseconds(600), "took \(run.elapsed)")
            #expect(run.calls == 1)
            #expect(server.accepted == 1)
        }

        @Test func connectionRefused() throws {
            let loop = try EventLoop()
            let port = try unusedPort(local4)
            let run = try runProbe(httpCheck(port: port), on: loop)
            #expect(run.failure == "connection refused by 127.0.0.1:\(port)")
            #expect(run.calls == 1 && !run.calledInsideStart)
            #expect(run.elapsed < .milliseconds(500))
        }

        @Test(.enabled(if: loopbackIPv6Works())) func overIPv6TheHostHasBrackets() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, address: local6, mode: .answer("HTTP/1.1 200 OK\r\n\r\n"))
            let run = try runProbe(httpCheck(local6, port: server.port), on: loop)
            #expect(run.succeeded)
            #expect(server.requests.first?.hasPrefix("GET / HTTP/1.0\r\nHost: [::1]:\(server.port)\r\n") == true)
        }
    }
}

extension CheckProbeTests {
    @Suite struct TCP {
        @Test func anAcceptedConnectionIsASuccessAndIsClosed() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .watchClose)
            let run = try runProbe(HealthCheck(name: "db", kind: .tcp(local4, port: server.port)), on: loop)
            #expect(run.succeeded)
            #expect(run.calls == 1 && !run.calledInsideStart)
            // The probe closed its end: the server reads end-of-file.
            #expect(try spin(loop, for: .seconds(2)) { server.closedByPeer == 1 })
        }

        @Test func refused() throws {
            let loop = try EventLoop()
            let port = try unusedPort(local4)
            let run = try runProbe(HealthCheck(name: "db", kind: .tcp(local4, port: port)), on: loop)
            #expect(run.failure == "connection refused by 127.0.0.1:\(port)")
            #expect(run.calls == 1 && !run.calledInsideStart)
        }
    }
}

extension CheckProbeTests {
    @Suite struct TFTP {
        static let request: [UInt8] = [0, 1] + Array("pxelinux.0".utf8) + [0] + Array("octet".utf8) + [0]

        @Test func firstBlockIsASuccessAndTheTransferIsAborted() throws {
            let loop = try EventLoop()
            let server = try TestTFTPServer(loop: loop, reply: .data)
            let run = try runProbe(tftpCheck(port: server.port), on: loop)
            #expect(run.succeeded)
            #expect(run.calls == 1 && !run.calledInsideStart)
            // The abort goes to the transfer's own port (the server's new socket), nothing more to the server's.
            #expect(try spin(loop, for: .seconds(2)) { server.aborts.count == 1 })
            #expect(server.aborts == [[0, 5, 0, 0] + Array("kusu-ha check done".utf8) + [0]])
            #expect(server.requests == [Self.request])
        }

        @Test func anErrorPacketIsAFailureWithItsCodeAndText() throws {
            let loop = try EventLoop()
            let server = try TestTFTPServer(loop: loop, reply: .error)
            let run = try runProbe(tftpCheck(port: server.port), on: loop)
            #expect(run.failure == "TFTP error 1 (File not found) for pxelinux.0")
            #expect(run.calls == 1 && !run.calledInsideStart)
        }

        /// The kernel refuses the datagram inside start() (port 0 is EINVAL for UDP): the failure
        /// still comes from the loop, after start() returned.
        @Test func aFailureInsideStartIsReportedLater() throws {
            let loop = try EventLoop()
            let run = try runProbe(tftpCheck(port: 0), on: loop)
            #expect(run.failure == "cannot send to 127.0.0.1:0: Invalid argument")
            #expect(run.calls == 1 && !run.calledInsideStart)
        }

        @Test func noAnswerTimesOutAfterOneRetransmission() throws {
            let loop = try EventLoop()
            let server = try TestTFTPServer(loop: loop, reply: .none)
            let run = try runProbe(tftpCheck(port: server.port, timeout: .milliseconds(400)), on: loop)
            #expect(run.failure == "no answer from tftp://127.0.0.1:\(server.port)/pxelinux.0 within 400 ms")
            #expect(run.elapsed >= .milliseconds(390) && run.elapsed < .milliseconds(700), "took \(run.elapsed)")
            // Once at the start, once at half the timeout, and no more.
            #expect(server.requests == [Self.request, Self.request])
            if server.requestTimes.count == 2 {
                let gap = server.requestTimes[1] - server.requestTimes[0]
                #expect(gap >= .milliseconds(190) && gap < .milliseconds(350), "retransmitted after \(gap)")
            }
        }
    }
}

extension CheckProbeTests {
    @Suite struct Command {
        @Test func exitStatusZeroIsASuccess() throws {
            let run = try runProbe(commandCheck(["/bin/true"]), on: EventLoop())
            #expect(run.succeeded)
            #expect(run.calls == 1 && !run.calledInsideStart)
        }

        @Test func exitStatusOneIsAFailure() throws {
            let run = try runProbe(commandCheck(["/bin/false"]), on: EventLoop())
            #expect(run.failure == "/bin/false exited with status 1")
            #expect(run.calls == 1 && !run.calledInsideStart)
        }

        @Test func theFailureCarriesTheFirstLineOfOutput() throws {
            // stderr counts too; the blank line before it does not.
            let script = "echo; echo broken >&2; echo second; exit 3"
            let run = try runProbe(commandCheck(["/bin/sh", "-c", script]), on: EventLoop())
            #expect(run.failure == "/bin/sh exited with status 3: broken")
        }

        @Test func theEnvironmentIsOnlyPATH() throws {
            // exit 1 makes the environment (less what sh adds itself) the failure's first line.
            let script = "env | grep -v '^PWD=\\|^SHLVL=\\|^_=' | tr '\\n' ' '; echo; exit 1"
            let run = try runProbe(commandCheck(["/bin/sh", "-c", script]), on: EventLoop())
            #expect(run.failure == "/bin/sh exited with status 1: PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        }

        @Test func aSignalIsNamed() throws {
            let run = try runProbe(commandCheck(["/bin/sh", "-c", "kill -SEGV $$"]), on: EventLoop())
            #expect(run.failure == "/bin/sh was killed by signal 11 (SIGSEGV)")
        }

        @Test func aMissingProgramIsAFailure() throws {
            let run = try runProbe(commandCheck(["/nonexistent/kusu-check"]), on: EventLoop())
            #expect(run.failure == "cannot run /nonexistent/kusu-check: No such file or directory")
        }

        @Test func aCommandPastItsTimeoutIsKilled() throws {
            let loop = try EventLoop()
            var results: [Result<Void, CheckFailure>] = []
            let start = EventLoop.clockNow
            let check = commandCheck(["/bin/sleep", "5"], timeout: .milliseconds(200))
            let probe = CheckProbe.start(check, loop: loop) { results.append($0) }
            #expect(try spin(loop, for: .seconds(3)) { !results.isEmpty })
            #expect(EventLoop.clockNow - start < .seconds(1))
            #expect(failureMessage(results.first) == "/bin/sleep did not finish within 200 ms")
            let pid = try #require(probe.childProcessID)
            #expect(try spin(loop, for: .seconds(1)) { processGone(pid) })
            try spin(loop, for: .milliseconds(100))
            #expect(results.count == 1)
        }

        @Test func theWholeProcessGroupIsKilled() throws {
            let loop = try EventLoop()
            var template = Array("/tmp/kusu-checkprobe-XXXXXX".utf8CString)
            let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
            try #require(made != nil)
            let directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let pidFile = directory + "/helper.pid"
            defer {
                unlink(pidFile)
                rmdir(directory)
            }
            // The shell starts a helper in the background and waits: both are in the child's group.
            let command = ["/bin/sh", "-c", "/bin/sleep 30 & echo $! > \(pidFile); wait"]
            var results: [Result<Void, CheckFailure>] = []
            let check = commandCheck(command, timeout: .milliseconds(300))
            let probe = CheckProbe.start(check, loop: loop) { results.append($0) }
            #expect(try spin(loop, for: .seconds(3)) { !results.isEmpty })
            #expect(failureMessage(results.first) == "/bin/sh did not finish within 300 ms")
            let helper = try #require(readPID(pidFile))
            #expect(try spin(loop, for: .seconds(1)) { processGone(helper) }, "the background helper was killed too")
            let shell = try #require(probe.childProcessID)
            #expect(try spin(loop, for: .seconds(1)) { processGone(shell) })
        }
    }
}

extension CheckProbeTests {
    @Suite struct Cancellation {
        @Test func cancelledHTTPProbeNeverCompletesAndClosesItsSocket() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .watchClose)
            var calls = 0
            let check = httpCheck(port: server.port, timeout: .milliseconds(200))
            let probe = CheckProbe.start(check, loop: loop) { _ in calls += 1 }
            // Connected and the request sent, the answer outstanding.
            #expect(try spin(loop, for: .seconds(2)) { server.requests.count == 1 })
            probe.cancel()
            #expect(try spin(loop, for: .seconds(1)) { server.closedByPeer == 1 })
            try spin(loop, for: .milliseconds(400))
            #expect(calls == 0)
        }

        @Test func releasingTheProbeEndsIt() throws {
            let loop = try EventLoop()
            let server = try TestTCPServer(loop: loop, mode: .watchClose)
            var calls = 0
            let check = httpCheck(port: server.port, timeout: .milliseconds(200))
            var probe: CheckProbe? = CheckProbe.start(check, loop: loop) { _ in calls += 1 }
            #expect(try spin(loop, for: .seconds(2)) { server.requests.count == 1 })
            #expect(probe != nil)
            probe = nil
            #expect(try spin(loop, for: .seconds(1)) { server.closedByPeer == 1 })
            try spin(loop, for: .milliseconds(400))
            #expect(calls == 0)
        }

        @Test func cancelledRightAfterAnImmediateFailureNeverCompletes() throws {
            let loop = try EventLoop()
            let port = try unusedPort(local4)
            var calls = 0
            let check = HealthCheck(name: "db", kind: .tcp(local4, port: port))
            let probe = CheckProbe.start(check, loop: loop) { _ in calls += 1 }
            probe.cancel()
            try spin(loop, for: .milliseconds(300))
            #expect(calls == 0)
        }

        @Test func cancelledTFTPProbeSendsNoRetransmission() throws {
            let loop = try EventLoop()
            let server = try TestTFTPServer(loop: loop, reply: .none)
            var calls = 0
            let check = tftpCheck(port: server.port, timeout: .milliseconds(200))
            let probe = CheckProbe.start(check, loop: loop) { _ in calls += 1 }
            #expect(try spin(loop, for: .seconds(1)) { server.requests.count == 1 })
            probe.cancel()
            try spin(loop, for: .milliseconds(400))
            #expect(calls == 0)
            #expect(server.requests.count == 1)
        }

        @Test func cancelledCommandIsKilledPromptlyAndNeverCompletes() throws {
            let loop = try EventLoop()
            var calls = 0
            let check = commandCheck(["/bin/sleep", "5"], timeout: .seconds(10))
            let probe = CheckProbe.start(check, loop: loop) { _ in calls += 1 }
            #expect(try spin(loop, for: .seconds(2)) { probe.childProcessID != nil })
            let pid = try #require(probe.childProcessID)
            #expect(!processGone(pid))
            let cancelledAt = EventLoop.clockNow
            probe.cancel()
            #expect(try spin(loop, for: .seconds(1)) { processGone(pid) })
            #expect(EventLoop.clockNow - cancelledAt < .milliseconds(500))
            // The thread's result reaches the loop and is dropped.
            try spin(loop, for: .milliseconds(200))
            #expect(calls == 0)
        }
    }
}

extension CheckProbeTests {
    @Suite struct Messages {
        @Test(arguments: [
            ("HTTP/1.1 200 OK", 200), ("HTTP/1.0 503 Service Unavailable", 503), ("HTTP/1.1 204", 204),
            ("HTTP/1.1 200 ", 200),
        ])
        func statusLines(line: String, status: Int) {
            #expect(HTTPMessage.statusCode(of: Array(line.utf8)[...]) == status)
        }

        @Test(arguments: [
            "", "HTTP/2 200", "HTTP/1.1 20", "HTTP/1.1 2000", "HTTP/1.1  200", "http/1.1 200 OK", "HTTP/1.x 200",
            " HTTP/1.1 200", "SSH-2.0-OpenSSH_9.2",
        ])
        func malformedStatusLines(line: String) {
            #expect(HTTPMessage.statusCode(of: Array(line.utf8)[...]) == nil)
        }

        @Test func firstLineNeedsItsEnd() {
            let line = Array("HTTP/1.1 200 OK".utf8)
            #expect(HTTPMessage.firstLine(of: line) == nil)
            #expect(HTTPMessage.firstLine(of: line + Array("\r\nX: y".utf8)).map { Array($0) } == line)
            #expect(HTTPMessage.firstLine(of: line + [10]).map { Array($0) } == line)
        }

        @Test func requestHostHeader() {
            let plain = HTTPMessage.request(for: HTTPTarget(address: .v4(198, 18, 0, 100), path: "/index.txt"))
            let expected =
                "GET /index.txt HTTP/1.0\r\nHost: 198.18.0.100\r\n"
                + "User-Agent: kusu-ha\r\nConnection: close\r\n\r\n"
            #expect(String(decoding: plain, as: UTF8.self) == expected)
            let v6 = HTTPMessage.request(for: HTTPTarget(address: IPAddress("2001:db8::1")!, port: 8080))
            #expect(String(decoding: v6, as: UTF8.self).hasPrefix("GET / HTTP/1.0\r\nHost: [2001:db8::1]:8080\r\n"))
        }

        @Test func tftpPackets() {
            #expect(TFTPPacket.parse([0, 3, 0, 1, 0x41][...]) == .data(block: 1))
            #expect(TFTPPacket.parse([0, 3, 0, 2][...]) == .data(block: 2))
            let denied: [UInt8] = [0, 5, 0, 2] + Array("denied\u{7}".utf8) + [0]
            #expect(TFTPPacket.parse(denied[...]) == .error(code: 2, message: "denied?"))
            // An empty message is the RFC's meaning of the code.
            #expect(TFTPPacket.parse([0, 5, 0, 1, 0][...]) == .error(code: 1, message: "File not found"))
            #expect(TFTPPacket.parse([0, 5, 0, 42][...]) == .error(code: 42, message: "unknown error code"))
            // An ACK, an OACK, a short packet: nothing the probe acts on.
            #expect(TFTPPacket.parse([0, 4, 0, 1][...]) == nil)
            #expect(TFTPPacket.parse([0, 6, 0x62, 0][...]) == nil)
            #expect(TFTPPacket.parse([0, 3, 0][...]) == nil)
            let request: [UInt8] = [0, 1, 0x61, 0x2F, 0x62, 0, 0x6F, 0x63, 0x74, 0x65, 0x74, 0]
            #expect(TFTPPacket.readRequest(file: "a/b") == request)
        }

        @Test func commandOutputAndDurations() {
            #expect(CommandRun.firstLine(of: Array("\n  \n\tfirst line \r\nsecond\n".utf8)) == "first line")
            #expect(CommandRun.firstLine(of: []) == "")
            #expect(CheckProbe.describe(.milliseconds(200)) == "200 ms")
            #expect(CheckProbe.describe(.seconds(1)) == "1.0 s")
            #expect(CheckProbe.describe(.milliseconds(2500)) == "2.5 s")
            #expect(CheckProbe.describe(.milliseconds(1250)) == "1250 ms")
        }
    }
}

// MARK: Checks

private func httpCheck(
    _ address: IPAddress = local4, port: UInt16, path: String = "/", expect: Int = 200, timeout: Duration = .seconds(1)
) -> HealthCheck {
    let target = HTTPTarget(address: address, port: port, path: path)
    return HealthCheck(name: "web", kind: .http(target, expectStatus: expect), timeout: timeout)
}

private func tftpCheck(port: UInt16, timeout: Duration = .seconds(1)) -> HealthCheck {
    HealthCheck(name: "pxe", kind: .tftp(local4, port: port, file: "pxelinux.0"), timeout: timeout)
}

private func commandCheck(_ argv: [String], timeout: Duration = .seconds(1)) -> HealthCheck {
    HealthCheck(name: "cmd", kind: .command(argv), timeout: timeout)
}

// MARK: Running probes

/// One probe run to its end on `loop`, and then a little longer (to see a second call).
private struct ProbeRun {
    var results: [Result<Void, CheckFailure>]
    var elapsed: Duration
    /// The completion ran inside `start` (it must not).
    var calledInsideStart: Bool

    var calls: Int { results.count }
    var succeeded: Bool { if case .success = results.first { true } else { false } }
    var failure: String? { failureMessage(results.first) }
}

private func runProbe(_ check: HealthCheck, on loop: EventLoop, limit: Duration = .seconds(5)) throws -> ProbeRun {
    var results: [Result<Void, CheckFailure>] = []
    let start = EventLoop.clockNow
    let probe = CheckProbe.start(check, loop: loop) { results.append($0) }
    let insideStart = !results.isEmpty
    try spin(loop, for: limit) { !results.isEmpty }
    let elapsed = EventLoop.clockNow - start
    try spin(loop, for: .milliseconds(50))
    withExtendedLifetime(probe) {}
    return ProbeRun(results: results, elapsed: elapsed, calledInsideStart: insideStart)
}

private func failureMessage(_ result: Result<Void, CheckFailure>?) -> String? {
    if case .failure(let failure) = result { failure.message } else { nil }
}

/// Runs `loop` until `condition` holds or `limit` has passed (iterations of at most 5 ms, so the
/// condition is looked at even when nothing happens); returns `condition()`.
@discardableResult
private func spin(_ loop: EventLoop, for limit: Duration, until condition: () -> Bool = { false }) throws -> Bool {
    let end = EventLoop.clockNow + limit
    while !condition() {
        let left = end - EventLoop.clockNow
        if left <= .zero { break }
        try loop.runOnce(timeout: min(left, .milliseconds(5)))
    }
    return condition()
}

/// No such process, or only its zombie (this container's init may not reap orphans).
private func processGone(_ pid: pid_t) -> Bool {
    if kill(pid, 0) != 0 { return errno == ESRCH }
    guard let file = fopen("/proc/\(pid)/stat", "r") else { return true }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 512)
    guard fgets(&line, Int32(line.count), file) != nil else { return true }
    let text = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    // "pid (comm) S …": the state follows the last ')'.
    guard let close = text.lastIndex(of: ")") else { return false }
    return text[text.index(after: close)...].drop { $0 == " " }.first == "Z"
}

private func readPID(_ path: String) -> pid_t? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 32)
    guard fgets(&line, Int32(line.count), file) != nil else { return nil }
    return pid_t(line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }.filter(\.isNumber))
}

// MARK: Loopback servers

private struct SetupError: Error, CustomStringConvertible {
    var description: String
    init(_ operation: String) { description = "\(operation): \(String(cString: strerror(errno)))" }
}

/// A socket bound to `address` with a port the kernel picks; the socket and its port.
private func boundSocket(_ address: IPAddress, stream: Bool) throws -> (fd: Int32, port: UInt16) {
    let type = (stream ? SOCK_STREAM : SOCK_DGRAM).rawValue | SOCK_CLOEXEC.rawValue
    let fd = socket(address.isIPv4 ? AF_INET : AF_INET6, Int32(type), 0)
    guard fd >= 0 else { throw SetupError("socket") }
    guard HeartbeatSocket.withSocketAddress(address, port: 0, { bind(fd, $0, $1) }) == 0 else {
        let error = SetupError("bind")
        close(fd)
        throw error
    }
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let named = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0, let port = TFTPProbe.port(of: storage) else {
        let error = SetupError("getsockname")
        close(fd)
        throw error
    }
    return (fd, port)
}

/// A port on `address` with nothing listening: bound once, then closed.
private func unusedPort(_ address: IPAddress) throws -> UInt16 {
    let (fd, port) = try boundSocket(address, stream: true)
    close(fd)
    return port
}

private func loopbackIPv6Works() -> Bool {
    guard let (fd, _) = try? boundSocket(local6, stream: true) else { return false }
    close(fd)
    return true
}

/// A TCP server on loopback, driven by the test's loop.
private final class TestTCPServer {
    enum Mode {
        /// Reads each request up to its blank line, sends this and closes.
        case answer(String)
        /// Accepts and never reads or answers.
        case silent
        /// Reads (requests recorded) and counts the connections the client closed.
        case watchClose
    }

    let port: UInt16
    private let listener: Int32
    private let mode: Mode
    private(set) var accepted = 0
    private(set) var requests: [String] = []
    private(set) var closedByPeer = 0
    /// Open connections: their source (none for a silent server) and what came so far.
    private var connections: [Int32: (source: EventSource?, received: [UInt8])] = [:]
    private var listening: EventSource?

    init(loop: EventLoop, address: IPAddress = local4, mode: Mode) throws {
        (listener, port) = try boundSocket(address, stream: true)
        self.mode = mode
        guard listen(listener, 8) == 0 else { throw SetupError("listen") }
        listening = try loop.addReadable(fd: listener) { [unowned self, unowned loop] in self.accept(on: loop) }
    }

    deinit {
        listening?.cancel()
        for (fd, connection) in connections {
            connection.source?.cancel()
            close(fd)
        }
        close(listener)
    }

    private func accept(on loop: EventLoop) {
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { return }
        accepted += 1
        if case .silent = mode {
            connections[fd] = (nil, [])
            return
        }
        guard let source = try? loop.addReadable(fd: fd, { [unowned self] in self.read(fd) }) else {
            close(fd)
            return
        }
        connections[fd] = (source, [])
    }

    private func read(_ fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard n > 0 else {
            closedByPeer += 1
            return drop(fd)
        }
        connections[fd]?.received += chunk[0..<n]
        guard let received = connections[fd]?.received, received.count >= 4,
            received.indices.dropLast(3).contains(where: { Array(received[$0..<$0 + 4]) == [13, 10, 13, 10] })
        else { return }
        requests.append(String(decoding: received, as: UTF8.self))
        connections[fd]?.received = []
        if case .answer(let response) = mode {
            let bytes = Array(response.utf8)
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            drop(fd)
        }
    }

    private func drop(_ fd: Int32) {
        connections.removeValue(forKey: fd)?.source?.cancel()
        close(fd)
    }
}

/// A TFTP server on 127.0.0.1, driven by the test's loop: it records each read request and
/// answers it (or not) from a new socket, as a real server answers from a new transfer id.
private final class TestTFTPServer {
    enum Reply { case data, error, none }

    let port: UInt16
    private let fd: Int32
    private let reply: Reply
    private let loop: EventLoop
    private(set) var requests: [[UInt8]] = []
    private(set) var requestTimes: [Duration] = []
    /// The packets the client sent to a transfer socket.
    private(set) var aborts: [[UInt8]] = []
    private var sources: [EventSource] = []
    private var transferSockets: [Int32] = []

    init(loop: EventLoop, reply: Reply) throws {
        (fd, port) = try boundSocket(local4, stream: false)
        self.reply = reply
        self.loop = loop
        sources.append(try loop.addReadable(fd: fd) { [unowned self] in self.receiveRequest() })
    }

    deinit {
        for source in sources { source.cancel() }
        for socket in transferSockets { close(socket) }
        close(fd)
    }

    private func receiveRequest() {
        guard let (packet, clientPort) = receive(on: fd) else { return }
        requests.append(packet)
        requestTimes.append(EventLoop.clockNow)
        let answer: [UInt8]
        switch reply {
        case .none: return
        case .data: answer = [0, 3, 0, 1] + Array("hello".utf8)
        case .error: answer = [0, 5, 0, 1] + Array("File not found".utf8) + [0]
        }
        guard let (transfer, _) = try? boundSocket(local4, stream: false) else { return }
        transferSockets.append(transfer)
        _ = HeartbeatSocket.withSocketAddress(local4, port: clientPort) { sa, length in
            answer.withUnsafeBytes { sendto(transfer, $0.baseAddress, $0.count, 0, sa, length) }
        }
        let watch = try? loop.addReadable(fd: transfer) { [unowned self] in
            if let (packet, _) = self.receive(on: transfer) { self.aborts.append(packet) }
        }
        if let watch { sources.append(watch) }
    }

    private func receive(on socket: Int32) -> ([UInt8], UInt16)? {
        var buffer = [UInt8](repeating: 0, count: 600)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(socket, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), $0, &length)
                }
            }
        }
        guard n >= 0, let port = TFTPProbe.port(of: storage) else { return nil }
        return (Array(buffer[0..<n]), port)
    }
}
