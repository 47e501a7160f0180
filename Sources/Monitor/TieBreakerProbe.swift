// The tie-breaker probe: before an automatic failover the standby must reach at
// least one of `cluster.tie_breakers`, so a node cut off from the network does
// not take over from a healthy active.
//
// kusu-hbd runs unprivileged and without capabilities, so it cannot open raw
// sockets; it uses Linux's unprivileged ICMP echo ("ping") sockets instead:
// socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), and AF_INET6/IPPROTO_ICMPV6 for IPv6
// targets. The kernel allows them only to a process whose gid (or a supplementary
// group) lies within net.ipv4.ping_group_range — one setting for both families,
// per network namespace. systemd sets it to "0 2147483647" (everyone) through
// /usr/lib/sysctl.d/50-default.conf; with the kernel's own default "1 0" socket()
// fails with EACCES, which is logged once and makes every target unreachable (the
// safe side: no automatic failover). The kernel fills in the ICMP identifier with
// the socket's port and the checksum; it delivers to the socket only echo replies
// with that identifier, which we match by source address and sequence number.
//
// Everything runs on the event loop's thread; the bookkeeping is the pure
// `ProbeState`, tested with a virtual clock.
import ClusterCore
import DBusKit
import Glibc
import Logging

/// What the probe knows, without I/O: the sequence numbers sent, which answers count,
/// and the last answer per target. Times are CLOCK_MONOTONIC durations (as `EventLoop.now`).
struct ProbeState {
    let targets: [IPAddress]
    /// A target counts as reachable while its last answered probe was sent less than `window` ago.
    let window: Duration
    /// The sequence number of the last round (the next round uses the one after it).
    private(set) var sequence: UInt16 = 0
    /// The rounds that may still be answered: sequence → when it was sent (younger than `window`).
    private(set) var outstanding: [UInt16: Duration] = [:]
    /// Per target (same index as `targets`): when the last answered probe was sent.
    private(set) var lastAnswer: [Duration?]
    /// The latest rounds (newest last, at most ``missedForSilence`` + 1): when each was sent and
    /// whether any target answered it.
    private(set) var recentRounds: [(sequence: UInt16, sentAt: Duration, answered: Bool)] = []
    static let missedForSilence = 3

    init(targets: [IPAddress], window: Duration) {
        self.targets = targets
        self.window = window
        lastAnswer = Array(repeating: nil, count: targets.count)
    }

    /// Starts a round at `now`: returns the sequence number to send to every target.
    mutating func beginRound(at now: Duration) -> UInt16 {
        sequence &+= 1
        outstanding = outstanding.filter { now - $0.value < window }
        outstanding[sequence] = now
        recentRounds.append((sequence, now, false))
        if recentRounds.count > Self.missedForSilence + 1 { recentRounds.removeFirst() }
        return sequence
    }

    /// Records an echo reply; returns whether it counted. Replies from an address that is
    /// not a target, and replies to a sequence not sent (or sent `window` ago or earlier) are
    /// ignored. The freshness of an answer is the send time of the probe it answers, so a
    /// reply delayed in some queue does not make a target look better than it is.
    @discardableResult
    mutating func accept(from source: IPAddress, sequence: UInt16, at now: Duration) -> Bool {
        // For silence, a late answer still shows the network works (the delay may be our own).
        if targets.contains(source), let round = recentRounds.firstIndex(where: { $0.sequence == sequence }) {
            recentRounds[round].answered = true
        }
        guard let sentAt = outstanding[sequence], now - sentAt < window else { return false }
        var counted = false
        for (index, target) in targets.enumerated() where target == source {
            if let last = lastAnswer[index], last >= sentAt { continue }
            lastAnswer[index] = sentAt
            counted = true
        }
        return counted
    }

    func isReachable(_ index: Int, at now: Duration) -> Bool {
        guard let last = lastAnswer[index] else { return false }
        return now - last < window
    }

    /// No targets configured, or at least one target reachable.
    func reachable(at now: Duration) -> Bool {
        targets.isEmpty || targets.indices.contains { isReachable($0, at: now) }
    }

    /// This node's network is silent: of the rounds sent at least `patience` ago (the ones that
    /// had their chance), the last ``missedForSilence`` went unanswered. Unlike `reachable`, a
    /// stall of the process itself (SIGSTOP, a long pause) does not make it true: the rounds
    /// sent before the stall were answered, and a round sent after it needs `patience` to count.
    func silent(patience: Duration, at now: Duration) -> Bool {
        guard !targets.isEmpty else { return false }
        let due = recentRounds.filter { now - $0.sentAt >= patience }.suffix(Self.missedForSilence)
        return due.count == Self.missedForSilence && due.allSatisfy { !$0.answered }
    }

    /// The next time after `now` at which a target stops being reachable, if any does.
    func nextExpiry(after now: Duration) -> Duration? {
        lastAnswer.compactMap { $0.map { $0 + window } }.filter { $0 > now }.min()
    }
}

/// Pings every target every `interval`; a target is reachable while its last answer is younger
/// than `window` (e.g. 3 × interval). `reachable` = no targets configured, or at least one
/// target reachable. `onChange` is called on the loop's thread when `reachable` changes.
final class TieBreakerProbe {
    let loop: EventLoop
    let interval: Duration
    let logger: Logger
    let onChange: (Bool) -> Void
    private(set) var state: ProbeState
    /// The ICMP socket per family (nil when there are no targets of that family or the
    /// kernel refused it); closed in deinit.
    private var socketV4: Int32?
    private var socketV6: Int32?
    private var readers: [EventSource] = []
    private var timer: TimerSource?
    private var nextRound: Duration = .zero
    private(set) var reachable: Bool
    /// Per target: the last sendto errno, so a failing route is logged once, not every second.
    private var sendFailures: [Int32?]
    private var buffer = [UInt8](repeating: 0, count: 512)

    init(
        targets: [IPAddress], loop: EventLoop, interval: Duration = .seconds(1), window: Duration = .seconds(3),
        logger: Logger, onChange: @escaping (Bool) -> Void
    ) throws(SocketError) {
        self.loop = loop
        self.interval = interval
        self.logger = logger
        self.onChange = onChange
        state = ProbeState(targets: targets, window: window)
        reachable = targets.isEmpty
        sendFailures = Array(repeating: nil, count: targets.count)
        do {
            if targets.contains(where: \.isIPv4) { socketV4 = try Self.openSocket(ipv6: false, logger: logger) }
            if targets.contains(where: { !$0.isIPv4 }) { socketV6 = try Self.openSocket(ipv6: true, logger: logger) }
        } catch {
            if let socketV4 { close(socketV4) }
            throw error
        }
    }

    deinit {
        stop()
        if let socketV4 { close(socketV4) }
        if let socketV6 { close(socketV6) }
    }

    /// Opens a non-blocking ping socket; nil (logged) when the kernel does not allow it to us.
    static func openSocket(ipv6: Bool, logger: Logger) throws(SocketError) -> Int32? {
        let type = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = ipv6 ? socket(AF_INET6, type, Int32(IPPROTO_ICMPV6)) : socket(AF_INET, type, Int32(IPPROTO_ICMP))
        if fd >= 0 { return fd }
        let code = errno
        switch code {
        case EACCES, EPERM, EAFNOSUPPORT, EPROTONOSUPPORT:
            // EACCES: our gid is outside net.ipv4.ping_group_range; EAFNOSUPPORT: IPv6 disabled.
            logger.error(
                "cannot open an ICMP socket for the tie-breakers: they count as unreachable (is net.ipv4.ping_group_range set?)",
                metadata: [
                    "tiebreaker.family": "\(ipv6 ? "ipv6" : "ipv4")", "error": "\(String(cString: strerror(code)))",
                    "ping_group_range": "\(Self.pingGroupRange() ?? "unknown")",
                ])
            return nil
        default:
            throw SocketError(operation: ipv6 ? "socket(AF_INET6, IPPROTO_ICMPV6)" : "socket(AF_INET, IPPROTO_ICMP)", code: code)
        }
    }

    static func pingGroupRange() -> String? {
        guard let file = fopen("/proc/sys/net/ipv4/ping_group_range", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        let text = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return text.split(whereSeparator: { $0 == "\t" || $0 == " " || $0 == "\n" }).joined(separator: " ")
    }

    /// Starts probing; the first round goes out at once. Does nothing without targets.
    func start() {
        guard timer == nil, !state.targets.isEmpty else { return }
        do {
            for fd in [socketV4, socketV6].compactMap({ $0 }) {
                readers.append(try loop.addReadable(fd: fd) { [unowned self] in self.receiveAll(from: fd) })
            }
            nextRound = loop.now
            timer = try loop.addTimer(at: nextRound, accuracy: .milliseconds(10)) { [unowned self] in self.tick() }
        } catch {
            // Without its sources the probe never answers: the targets stay unreachable (the safe side).
            logger.error("cannot start the tie-breaker probe", metadata: ["error": "\(error)"])
        }
    }

    /// Sends a round now (the peer just fell silent: a fresh answer is wanted), without
    /// changing the cadence.
    func probeNow() {
        guard timer != nil else { return }
        sendRound(at: loop.now)
    }

    /// Whether some target answered a ping sent after `instant` (CLOCK_MONOTONIC, as
    /// `loop.now`): proof that this node's own network worked after that moment.
    /// True when no targets are configured.
    func answered(since instant: Duration) -> Bool {
        state.targets.isEmpty || state.lastAnswer.contains { ($0 ?? .zero) > instant }
    }

    /// Three rounds in a row went unanswered, each given half an interval (answers on a LAN take
    /// well under a millisecond), so a node that just started, or was itself stalled, is not "cut
    /// off" before it could hear answers.
    func silent(at now: Duration) -> Bool {
        guard timer != nil else { return false }
        // Answers already queued on the sockets count, even if the loop has not read them yet
        // (the readable sources evaluate them when they run).
        for fd in [socketV4, socketV6].compactMap({ $0 }) { drain(fd) }
        return state.silent(patience: interval / 2, at: now)
    }

    /// Stops probing; `reachable` keeps its last value.
    func stop() {
        timer?.cancel()
        timer = nil
        for reader in readers { reader.cancel() }
        readers.removeAll()
    }

    // MARK: Loop handlers

    func tick() {
        let now = loop.now
        if now >= nextRound {
            sendRound(at: now)
            // Keep a steady cadence; after a stall resume without a burst.
            nextRound += interval
            if nextRound <= now { nextRound = now + interval }
        }
        evaluate(at: now)
        rearm(after: now)
    }

    func sendRound(at now: Duration) {
        let sequence = state.beginRound(at: now)
        for (index, target) in state.targets.enumerated() {
            let failure: Int32?
            if let fd = target.isIPv4 ? socketV4 : socketV6 {
                failure = Self.sendEcho(fd: fd, to: target, sequence: sequence)
            } else {
                failure = EACCES
            }
            if failure != sendFailures[index] {
                if let failure, failure != EACCES {
                    logger.warning(
                        "cannot send to a tie-breaker",
                        metadata: ["tiebreaker.address": "\(target)", "error": "\(String(cString: strerror(failure)))"])
                } else if failure == nil, sendFailures[index] != EACCES {
                    logger.info("sending to the tie-breaker again", metadata: ["tiebreaker.address": "\(target)"])
                }
                sendFailures[index] = failure
            }
        }
    }

    /// One ICMP echo request (type 8, or 128 for IPv6); the kernel sets the identifier and checksum.
    static func sendEcho(fd: Int32, to target: IPAddress, sequence: UInt16) -> Int32? {
        var packet = Self.echoRequest(ipv6: !target.isIPv4, sequence: sequence)
        let sent = HeartbeatSocket.withSocketAddress(target, port: 0) { sa, length in
            packet.withUnsafeMutableBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT), sa, length) }
        }
        return sent < 0 ? errno : nil
    }

    /// Type, code, checksum (0: the kernel's), identifier (0: the kernel's), sequence, then a short payload.
    static func echoRequest(ipv6: Bool, sequence: UInt16) -> [UInt8] {
        [ipv6 ? 128 : 8, 0, 0, 0, 0, 0, UInt8(sequence >> 8), UInt8(sequence & 0xff)] + Array("kusu-ha".utf8)
    }

    /// The sequence number of an echo reply (type 0, or 129 for IPv6); nil for anything else.
    static func echoReplySequence(_ bytes: ArraySlice<UInt8>, ipv6: Bool) -> UInt16? {
        guard bytes.count >= 8 else { return nil }
        let start = bytes.startIndex
        guard bytes[start] == (ipv6 ? 129 : 0), bytes[start + 1] == 0 else { return nil }
        return UInt16(bytes[start + 6]) << 8 | UInt16(bytes[start + 7])
    }

    func receiveAll(from fd: Int32) {
        drain(fd)
        evaluate(at: loop.now)
        rearm(after: loop.now)
    }

    /// Reads every queued echo reply into the state (without evaluating it).
    func drain(_ fd: Int32) {
        let ipv6 = fd == socketV6
        let now = loop.now
        // Bounded, so a flood cannot starve the loop; the level-triggered source calls us again.
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                break  // EAGAIN, or a transient error that the next read clears
            }
            guard let source = HeartbeatSocket.address(of: storage),
                  let sequence = Self.echoReplySequence(buffer[0..<min(n, buffer.count)], ipv6: ipv6)
            else { continue }
            state.accept(from: source, sequence: sequence, at: now)
        }
    }

    func evaluate(at now: Duration) {
        let new = state.reachable(at: now)
        guard new != reachable else { return }
        reachable = new
        let answering = state.targets.indices.filter { state.isReachable($0, at: now) }.map { "\(state.targets[$0])" }
        logger.notice(
            new ? "tie-breaker reachable" : "no tie-breaker reachable",
            metadata: [
                "tiebreaker.reachable": "\(new)", "tiebreaker.answering": "\(answering.joined(separator: " "))",
                "tiebreaker.targets": "\(state.targets.map { "\($0)" }.joined(separator: " "))",
            ])
        onChange(new)
    }

    /// The timer fires at the next round, or earlier when an answer expires before it.
    func rearm(after now: Duration) {
        var next = nextRound
        if let expiry = state.nextExpiry(after: now), expiry < next { next = expiry }
        timer?.reschedule(at: next)
    }
}
