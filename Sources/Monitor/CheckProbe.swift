// Probes for `[[checks]]`: is what the active node serves really served? The caller
// schedules one probe per interval; each ends within the check's timeout.
//
// kusu-hbd runs them on its event-loop thread, unprivileged and without capabilities. The
// network kinds (http, tcp, tftp) are non-blocking sockets watched by the loop; no names
// are resolved (a check names an IP address, so a hanging DNS server cannot decide the
// health of the service). A command runs off the loop (EventLoop.perform), as fencing
// does, in a process group of its own that is killed as a whole at the timeout.
import ClusterCore
import DBusKit
import Glibc
import Synchronization
import SystemSupport

/// Why a probe failed, in words an administrator understands (e.g. "HTTP 503 from
/// http://198.18.0.100/index.txt (expected 200)", "connection refused by 198.18.0.100:80").
struct CheckFailure: Error, Equatable, Sendable {
    var message: String
}

/// One probe of a check. `start` calls `completion` exactly once, on the loop thread, with
/// success or a failure, no later than `check.timeout` after the start (plus scheduling
/// slack), and never synchronously inside `start`. `cancel()` (or releasing the object) ends
/// the probe: sockets closed, timers cancelled, a command killed, `completion` never called.
final class CheckProbe {
    typealias Completion = (Result<Void, CheckFailure>) -> Void

    private let loop: EventLoop
    private let timeout: Duration
    private var completion: Completion?
    /// The kind's own part; nil once the probe is over.
    private var work: (any CheckWork)?
    /// Fires at the deadline, or earlier (rescheduled to now) to deliver an outcome known before it.
    private var deadline: TimerSource?
    /// Delivers the outcome when the loop could not make the deadline timer.
    private var fallback: EventSource?
    private var outcome: Result<Void, CheckFailure>?
    /// A command check's shared state (the child's pid, for tests).
    private var commandControl: CommandControl?

    private init(loop: EventLoop, timeout: Duration, completion: @escaping Completion) {
        self.loop = loop
        self.timeout = timeout
        self.completion = completion
    }

    deinit { cancel() }

    static func start(_ check: HealthCheck, loop: EventLoop, completion: @escaping Completion) -> CheckProbe {
        let probe = CheckProbe(loop: loop, timeout: check.timeout, completion: completion)
        probe.begin(check.kind)
        return probe
    }

    /// Ends the probe without calling the completion. Idempotent.
    func cancel() {
        completion = nil
        stopWork()
        deadline?.cancel()
        deadline = nil
        fallback?.cancel()
        fallback = nil
    }

    /// The process id of a command check's child once it is spawned (it may have ended since).
    var childProcessID: pid_t? {
        guard let control = commandControl else { return nil }
        let pid = control.pid.load(ordering: .acquiring)
        return pid > 0 ? pid : nil
    }

    private func begin(_ kind: HealthCheck.Kind) {
        do {
            deadline = try loop.addTimer(at: EventLoop.clockNow + timeout) { [unowned self] in self.deliver() }
        } catch {
            finish(.failure(CheckFailure(message: "cannot start the check: \(error)")))
            return
        }
        let report: Completion = { [weak self] in self?.finish($0) }
        let work: any CheckWork
        switch kind {
        case .http(let target, let expectStatus):
            work = HTTPProbe(target: target, expectStatus: expectStatus, loop: loop, report: report)
        case .tcp(let address, let port):
            work = TCPProbe(address: address, port: port, loop: loop, report: report)
        case .tftp(let address, let port, let file):
            work = TFTPProbe(address: address, port: port, file: file, timeout: timeout, loop: loop, report: report)
        case .command(let argv):
            let command = CommandProbe(argv: argv, timeout: timeout, loop: loop, report: report)
            commandControl = command.control
            work = command
        }
        self.work = work
        work.start()
    }

    /// Records the outcome and ends the work; the completion runs at the next loop iteration
    /// (never inside `start` or a handler of the work).
    private func finish(_ result: Result<Void, CheckFailure>) {
        guard completion != nil, outcome == nil else { return }
        outcome = result
        stopWork()
        if let deadline {
            deadline.reschedule(at: loop.now)
            return
        }
        do {
            fallback = try loop.addDeferred { [unowned self] in self.deliver() }
        } catch {
            // The loop can allocate no source at all: calling back now (possibly inside start)
            // is better than never, which would leave the check waiting forever.
            deliver()
        }
    }

    /// At the deadline, or with an outcome known earlier.
    private func deliver() {
        guard let completion else { return }
        let late = CheckFailure(message: work?.timeoutMessage(timeout) ?? "no answer within \(Self.describe(timeout))")
        let result = outcome ?? .failure(late)
        cancel()
        completion(result)
    }

    private func stopWork() {
        let work = self.work
        self.work = nil
        work?.stop()
    }

    /// "200 ms", "1.0 s", "2.5 s", "1250 ms": short, and as precise as the configuration.
    static func describe(_ duration: Duration) -> String {
        let ms = duration.wholeMilliseconds
        guard ms >= 1000, ms % 100 == 0 else { return "\(ms) ms" }
        return "\(ms / 1000).\(ms % 1000 / 100) s"
    }
}

/// The part of a probe that depends on its kind. It reports its outcome through the closure
/// it was made with, at most once, and does nothing after `stop()`.
protocol CheckWork: AnyObject {
    func start()
    /// Ends the work: event sources cancelled, sockets closed, a command told to die. Idempotent.
    func stop()
    /// What a timeout means at the current stage ("no answer from … within 1.0 s").
    func timeoutMessage(_ timeout: Duration) -> String
}

// MARK: Sockets

/// A non-blocking socket of a probe and the one event source watching it. Closed exactly
/// once (by `close()` or deinit), after its source is cancelled.
final class ProbeSocket {
    let fd: Int32
    private let loop: EventLoop
    private var source: EventSource?
    private var closed = false

    /// socket(2) of the address's family, SOCK_NONBLOCK | SOCK_CLOEXEC.
    init(for address: IPAddress, datagram: Bool, loop: EventLoop) throws(CheckFailure) {
        let type = (datagram ? SOCK_DGRAM : SOCK_STREAM).rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue
        fd = socket(address.isIPv4 ? AF_INET : AF_INET6, Int32(type), 0)
        guard fd >= 0 else { throw CheckFailure(message: "cannot open a socket: \(errorText(errno))") }
        self.loop = loop
    }

    deinit { close() }

    /// Calls `handler` while the socket is readable (or writable), replacing any earlier watch.
    func watch(writable: Bool, _ handler: @escaping () -> Void) throws(CheckFailure) {
        unwatch()
        do {
            source = writable ? try loop.addWritable(fd: fd, handler) : try loop.addReadable(fd: fd, handler)
        } catch {
            throw CheckFailure(message: "cannot watch a socket: \(error)")
        }
    }

    func unwatch() {
        source?.cancel()
        source = nil
    }

    func close() {
        guard !closed else { return }
        closed = true
        unwatch()
        _ = Glibc.close(fd)
    }

    /// Starts a non-blocking connect: nil once it is under way (or done), else its errno.
    func connect(to address: IPAddress, port: UInt16) -> Int32? {
        let r = HeartbeatSocket.withSocketAddress(address, port: port) { Glibc.connect(fd, $0, $1) }
        guard r < 0 else { return nil }
        let code = errno
        return code == EINPROGRESS || code == EINTR ? nil : code
    }

    /// The socket's pending error (SO_ERROR): 0 once a connect has succeeded.
    func pendingError() -> Int32 {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) == 0 else { return errno }
        return code
    }

    /// Never block, and report a reset peer as EPIPE rather than with SIGPIPE.
    static let sendFlags = Int32(MSG_DONTWAIT | MSG_NOSIGNAL)

    /// One datagram to `address:port`; nil when sent, else the errno.
    func send(_ bytes: [UInt8], to address: IPAddress, port: UInt16) -> Int32? {
        let sent = HeartbeatSocket.withSocketAddress(address, port: port) { sa, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Self.sendFlags, sa, length) }
        }
        return sent < 0 ? errno : nil
    }
}

/// "Connection refused" and the like (strerror).
func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

/// `address:port`, IPv6 in brackets.
private func endpoint(_ address: IPAddress, _ port: UInt16) -> String {
    HealthCheck.Kind.tcp(address, port: port).target
}

// MARK: TCP

/// `.tcp`: the connect completes (SO_ERROR 0); then the socket is closed. Also the first
/// stage of `.http`, which overrides `connected()`.
class TCPProbe: CheckWork {
    let address: IPAddress
    let port: UInt16
    let loop: EventLoop
    let report: CheckProbe.Completion
    private(set) var socket: ProbeSocket?
    private(set) var isConnected = false

    init(address: IPAddress, port: UInt16, loop: EventLoop, report: @escaping CheckProbe.Completion) {
        self.address = address
        self.port = port
        self.loop = loop
        self.report = report
    }

    deinit { stop() }

    func start() {
        do {
            let socket = try ProbeSocket(for: address, datagram: false, loop: loop)
            self.socket = socket
            if let code = socket.connect(to: address, port: port) { return fail(code) }
            // EPOLLOUT comes when the connect is done, either way (also when it already is).
            try socket.watch(writable: true) { [unowned self] in self.connectDone() }
        } catch {
            report(.failure(error))
        }
    }

    func stop() {
        socket?.close()
        socket = nil
    }

    func timeoutMessage(_ timeout: Duration) -> String {
        "no connection to \(endpoint(address, port)) within \(CheckProbe.describe(timeout))"
    }

    private func connectDone() {
        guard let socket else { return }
        socket.unwatch()
        let code = socket.pendingError()
        guard code == 0 else { return fail(code) }
        isConnected = true
        connected()
    }

    /// The connection is established: for `.tcp`, that is the success.
    func connected() {
        stop()
        report(.success(()))
    }

    /// Reports a socket error in words (and closes the socket).
    func fail(_ code: Int32) {
        stop()
        let peer = endpoint(address, port)
        let message: String
        switch code {
        case ECONNREFUSED: message = "connection refused by \(peer)"
        case ECONNRESET: message = "connection reset by \(peer)"
        default: message = "\(isConnected ? "connection to" : "cannot connect to") \(peer): \(errorText(code))"
        }
        report(.failure(CheckFailure(message: message)))
    }
}

// MARK: HTTP

/// `.http`: `GET path HTTP/1.0`, then the status of the answer's first line (read within 4 KiB).
final class HTTPProbe: TCPProbe {
    static let maximumResponse = 4096
    let target: HTTPTarget
    let expectStatus: Int
    private var unsent: ArraySlice<UInt8> = []
    private var received: [UInt8] = []

    init(target: HTTPTarget, expectStatus: Int, loop: EventLoop, report: @escaping CheckProbe.Completion) {
        self.target = target
        self.expectStatus = expectStatus
        super.init(address: target.address, port: target.port, loop: loop, report: report)
    }

    override func timeoutMessage(_ timeout: Duration) -> String {
        guard isConnected else { return super.timeoutMessage(timeout) }
        let what = received.isEmpty ? "no answer" : "no complete HTTP status line"
        return "\(what) from \(target) within \(CheckProbe.describe(timeout))"
    }

    override func connected() {
        unsent = HTTPMessage.request(for: target)[...]
        sendRequest()
    }

    private func sendRequest() {
        guard let socket else { return }
        while !unsent.isEmpty {
            let n = unsent.withUnsafeBytes { send(socket.fd, $0.baseAddress, $0.count, ProbeSocket.sendFlags) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                guard code == EAGAIN || code == EWOULDBLOCK else { return fail(code) }
                return watch(writable: true) { [unowned self] in self.sendRequest() }
            }
            unsent = unsent.dropFirst(n)
        }
        watch(writable: false) { [unowned self] in self.receive() }
    }

    private func watch(writable: Bool, _ handler: @escaping () -> Void) {
        do {
            try socket?.watch(writable: writable, handler)
        } catch {
            stop()
            report(.failure(error))
        }
    }

    private func receive() {
        guard let socket else { return }
        var chunk = [UInt8](repeating: 0, count: Self.maximumResponse - received.count)
        let n = chunk.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 {
            let code = errno
            if code == EINTR || code == EAGAIN || code == EWOULDBLOCK { return }
            return fail(code)
        }
        received += chunk[0..<n]
        if let line = HTTPMessage.firstLine(of: received) {
            evaluate(line)
        } else if n == 0 {
            // Closed before a line end: what came is all there is.
            if received.isEmpty {
                failWith("\(endpoint(address, port)) closed the connection without answering")
            } else {
                evaluate(received[...])
            }
        } else if received.count >= Self.maximumResponse {
            failWith("no HTTP status line in the first \(Self.maximumResponse) bytes from \(target)")
        }
    }

    private func evaluate(_ line: ArraySlice<UInt8>) {
        guard let status = HTTPMessage.statusCode(of: line) else {
            return failWith("malformed HTTP status line from \(target): \"\(HTTPMessage.printable(line))\"")
        }
        guard status == expectStatus else {
            return failWith("HTTP \(status) from \(target) (expected \(expectStatus))")
        }
        stop()
        report(.success(()))
    }

    private func failWith(_ message: String) {
        stop()
        report(.failure(CheckFailure(message: message)))
    }
}

/// The bytes of an HTTP/1.0 exchange, without I/O.
enum HTTPMessage {
    static func request(for target: HTTPTarget) -> [UInt8] {
        let host = target.address.isIPv4 ? "\(target.address)" : "[\(target.address)]"
        let authority = target.port == 80 ? host : "\(host):\(target.port)"
        let lines = [
            "GET \(target.path) HTTP/1.0", "Host: \(authority)", "User-Agent: kusu-ha", "Connection: close", "", "",
        ]
        return Array(lines.joined(separator: "\r\n").utf8)
    }

    /// The first line of `bytes` (without its LF or CR LF), once it is complete.
    static func firstLine(of bytes: [UInt8]) -> ArraySlice<UInt8>? {
        guard let end = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let line = bytes[..<end]
        return line.last == UInt8(ascii: "\r") ? line.dropLast() : line
    }

    /// The status of `HTTP/1.x NNN[ reason]`; nil for anything else.
    static func statusCode(of line: ArraySlice<UInt8>) -> Int? {
        let bytes = Array(line)
        let prefix = Array("HTTP/1.".utf8)
        let space = UInt8(ascii: " ")
        guard bytes.count >= 12, Array(bytes[0..<7]) == prefix, isDigit(bytes[7]), bytes[8] == space,
            bytes[9..<12].allSatisfy(isDigit), bytes.count == 12 || bytes[12] == space
        else { return nil }
        return bytes[9..<12].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    /// At most `limit` bytes, anything but printable ASCII as "?": safe in a log line.
    static func printable(_ bytes: ArraySlice<UInt8>, limit: Int = 60) -> String {
        String(decoding: bytes.prefix(limit).map { (0x20..<0x7F).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }
}

// MARK: TFTP

/// `.tftp`: an RFC 1350 read request, answered with the first block of the file. The answer
/// comes from the server's address and a new port (its transfer id); the transfer is then
/// aborted politely with an ERROR packet to that port.
final class TFTPProbe: CheckWork {
    let address: IPAddress
    let port: UInt16
    let file: String
    let timeout: Duration
    let loop: EventLoop
    let report: CheckProbe.Completion
    private var socket: ProbeSocket?
    /// Sends the request once more at half the timeout (a datagram may be lost).
    private var retransmit: TimerSource?
    private var buffer = [UInt8](repeating: 0, count: 600)

    init(
        address: IPAddress, port: UInt16, file: String, timeout: Duration, loop: EventLoop,
        report: @escaping CheckProbe.Completion
    ) {
        self.address = address
        self.port = port
        self.file = file
        self.timeout = timeout
        self.loop = loop
        self.report = report
    }

    deinit { stop() }

    func start() {
        do {
            let socket = try ProbeSocket(for: address, datagram: true, loop: loop)
            self.socket = socket
            try socket.watch(writable: false) { [unowned self] in self.receive() }
            guard sendRequest() else { return }
            retransmit = try loop.addTimer(at: EventLoop.clockNow + timeout / 2) { [unowned self] in
                _ = self.sendRequest()
            }
        } catch let error as CheckFailure {
            failWith(error.message)
        } catch {
            failWith("cannot start the TFTP check: \(error)")
        }
    }

    func stop() {
        retransmit?.cancel()
        retransmit = nil
        socket?.close()
        socket = nil
    }

    func timeoutMessage(_ timeout: Duration) -> String {
        let url = HealthCheck.Kind.tftp(address, port: port, file: file).target
        return "no answer from \(url) within \(CheckProbe.describe(timeout))"
    }

    /// Sends the read request; false (and reported) when the kernel refuses it.
    private func sendRequest() -> Bool {
        guard let socket else { return false }
        guard let code = socket.send(TFTPPacket.readRequest(file: file), to: address, port: port) else { return true }
        failWith("cannot send to \(endpoint(address, port)): \(errorText(code))")
        return false
    }

    private func receive() {
        // Bounded, so a flood cannot starve the loop; the level-triggered source calls us again.
        for _ in 0..<16 {
            guard let socket else { return }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(socket.fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                return  // EAGAIN, or a transient error that the next read clears
            }
            // Only the server's address counts; its port is the transfer's own (a new one).
            guard HeartbeatSocket.address(of: storage) == address, let serverPort = Self.port(of: storage) else {
                continue
            }
            switch TFTPPacket.parse(buffer[0..<n]) {
            case .data(block: 1):
                _ = socket.send(TFTPPacket.abort, to: address, port: serverPort)
                stop()
                report(.success(()))
                return
            case .error(let code, let message):
                return failWith("TFTP error \(code) (\(message)) for \(file)")
            default:
                continue  // a stray or late packet
            }
        }
    }

    private func failWith(_ message: String) {
        stop()
        report(.failure(CheckFailure(message: message)))
    }

    static func port(of storage: sockaddr_storage) -> UInt16? {
        var storage = storage
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: &storage) { raw in
            switch family {
            case AF_INET: UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
            case AF_INET6: UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            default: nil
            }
        }
    }
}

/// The TFTP packets a probe sends and understands (RFC 1350), without I/O.
enum TFTPPacket: Equatable {
    case data(block: UInt16)
    case error(code: UInt16, message: String)

    /// RRQ (opcode 1): the file name and "octet", each NUL-terminated.
    static func readRequest(file: String) -> [UInt8] {
        [0, 1] + Array(file.utf8) + [0] + Array("octet".utf8) + [0]
    }

    /// ERROR (opcode 5) code 0: ends the transfer the server started for us.
    static let abort: [UInt8] = [0, 5, 0, 0] + Array("kusu-ha check done".utf8) + [0]

    /// A DATA or ERROR packet; nil for anything else. An ERROR's message is made printable
    /// (at most 100 characters) and, when empty, is the RFC's meaning of the code.
    static func parse(_ bytes: ArraySlice<UInt8>) -> TFTPPacket? {
        guard bytes.count >= 4 else { return nil }
        let b = Array(bytes)
        let opcode = UInt16(b[0]) << 8 | UInt16(b[1])
        let number = UInt16(b[2]) << 8 | UInt16(b[3])
        switch opcode {
        case 3:
            return .data(block: number)
        case 5:
            let text = b[4...].prefix { $0 != 0 }.prefix(100)
            let message = HTTPMessage.printable(text[...], limit: 100)
            return .error(code: number, message: message.isEmpty ? meaning(of: number) : message)
        default:
            return nil
        }
    }

    static func meaning(of code: UInt16) -> String {
        let meanings = [
            "Not defined", "File not found", "Access violation", "Disk full or allocation exceeded",
            "Illegal TFTP operation", "Unknown transfer ID", "File already exists", "No such user",
            "Option negotiation refused",
        ]
        return Int(code) < meanings.count ? meanings[Int(code)] : "unknown error code"
    }
}
