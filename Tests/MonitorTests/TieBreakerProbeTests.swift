import ClusterCore
import DBusKit
import Glibc
import Logging
import Testing

@testable import Monitor

private let a = IPAddress.v4(198, 18, 0, 1)
private let b = IPAddress("2001:db8::1")!
private let stranger = IPAddress.v4(198, 18, 0, 9)

@Suite struct TieBreakerState {
    /// Silence (for the service-loss handover) needs three rounds in a row unanswered, each given
    /// the patience; a stall of the process itself is not silence.
    @Test func silentAfterThreeMissedRoundsOnly() {
        var state = ProbeState(targets: [a], window: .seconds(3))
        let second = Duration.seconds(1), patience = Duration.milliseconds(500)
        var clock = Duration.seconds(10)
        // Just started: no rounds yet, then rounds not yet aged.
        #expect(!state.silent(patience: patience, at: clock))
        for _ in 0..<3 {
            _ = state.beginRound(at: clock)
            clock += second
        }
        // Rounds of 10, 11, 12 unanswered: silent from 12.5 on.
        #expect(!state.silent(patience: patience, at: .milliseconds(12_499)))
        #expect(state.silent(patience: patience, at: .milliseconds(12_500)))
        // A new round does not hide the silence while it is young (the rounds go on at a steady cadence).
        _ = state.beginRound(at: .seconds(13))
        #expect(state.silent(patience: patience, at: .milliseconds(13_001)))
        #expect(state.silent(patience: patience, at: .milliseconds(13_600)))

        // One answer (to any of the three) ends the silence.
        var answered = ProbeState(targets: [a], window: .seconds(3))
        clock = .seconds(10)
        let first = answered.beginRound(at: clock)
        _ = answered.beginRound(at: clock + second)
        _ = answered.beginRound(at: clock + second * 2)
        #expect(accepted(&answered, from: a, sequence: first, at: clock + .milliseconds(5)))
        #expect(!answered.silent(patience: patience, at: clock + second * 10))
        // ... and a late one still counts for it (the delay may be our own).
        var late = ProbeState(targets: [a], window: .seconds(3))
        let slow = late.beginRound(at: clock)
        _ = late.beginRound(at: clock + second)
        _ = late.beginRound(at: clock + second * 2)
        #expect(!accepted(&late, from: a, sequence: slow, at: clock + second * 4))
        #expect(!late.silent(patience: patience, at: clock + second * 4))
        // A reply from a stranger is not an answer.
        var strangers = ProbeState(targets: [a], window: .seconds(3))
        for n in 0..<3 {
            let seq = strangers.beginRound(at: clock + second * n)
            _ = strangers.accept(from: stranger, sequence: seq, at: clock + second * n + .milliseconds(1))
        }
        #expect(strangers.silent(patience: patience, at: clock + second * 3))
    }

    @Test func aStalledProcessIsNotSilent() {
        var state = ProbeState(targets: [a], window: .seconds(3))
        var clock = answeredRounds(&state, 5, from: .seconds(10))
        // Stopped for 20 s: when it runs again every answer is old (not reachable), but the
        // rounds it sent were answered, and the first round after the stall is fresh.
        clock += .seconds(20)
        #expect(!state.reachable(at: clock))
        #expect(!state.silent(patience: .milliseconds(500), at: clock))
        _ = state.beginRound(at: clock)
        #expect(!state.silent(patience: .milliseconds(500), at: clock + .milliseconds(900)))
        // Only three unanswered rounds after the stall make it silent.
        _ = state.beginRound(at: clock + .seconds(1))
        #expect(!state.silent(patience: .milliseconds(500), at: clock + .milliseconds(1900)))
        _ = state.beginRound(at: clock + .seconds(2))
        #expect(state.silent(patience: .milliseconds(500), at: clock + .milliseconds(2500)))
    }

    @Test func noTargetsIsNeverSilent() {
        var state = ProbeState(targets: [], window: .seconds(3))
        for n in 0..<3 { _ = state.beginRound(at: .seconds(n)) }
        #expect(!state.silent(patience: .milliseconds(500), at: .seconds(100)))
    }

    @Test func noTargetsIsReachable() {
        let state = ProbeState(targets: [], window: .seconds(3))
        #expect(state.reachable(at: .seconds(0)))
        #expect(state.reachable(at: .seconds(1000)))
        #expect(state.nextExpiry(after: .zero) == nil)
    }

    @Test func unreachableUntilAnAnswer() {
        var state = ProbeState(targets: [a, b], window: .seconds(3))
        #expect(!state.reachable(at: .seconds(100)))
        let seq = state.beginRound(at: .seconds(100))
        #expect(seq == 1)
        #expect(!state.reachable(at: .milliseconds(100_500)))
        #expect(accepted(&state, from: b, sequence: seq, at: .milliseconds(100_010)))
        #expect(state.reachable(at: .milliseconds(100_010)))
        #expect(!state.isReachable(0, at: .milliseconds(100_010)))
        #expect(state.isReachable(1, at: .milliseconds(100_010)))
    }

    @Test func answerAgesOutAfterTheWindowCountedFromItsProbe() {
        var state = ProbeState(targets: [a], window: .seconds(3))
        let seq = state.beginRound(at: .seconds(10))
        // A reply that took 500 ms counts from when its probe left.
        #expect(accepted(&state, from: a, sequence: seq, at: .milliseconds(10_500)))
        #expect(state.nextExpiry(after: .milliseconds(10_500)) == .seconds(13))
        #expect(state.reachable(at: .milliseconds(12_999)))
        #expect(!state.reachable(at: .seconds(13)))
        #expect(state.nextExpiry(after: .seconds(13)) == nil)
    }

    @Test func steadyAnswersKeepItReachableAndSilenceLosesIt() {
        var state = ProbeState(targets: [a], window: .seconds(3))
        var clock = answeredRounds(&state, 10, from: .seconds(50)) { now, state in #expect(state.reachable(at: now)) }
        // The target goes silent at 60 s: rounds continue, nothing answers.
        _ = state.beginRound(at: clock)
        clock += .seconds(1)
        #expect(state.reachable(at: clock))
        _ = state.beginRound(at: clock)
        // The last answered probe left at 59 s; the window is 3 s.
        #expect(state.reachable(at: .milliseconds(61_999)))
        #expect(!state.reachable(at: .seconds(62)))
    }

    @Test func wrongSequenceAndUnknownSourceIgnored() {
        var state = ProbeState(targets: [a, b], window: .seconds(3))
        let seq = state.beginRound(at: .seconds(1))
        #expect(!accepted(&state, from: stranger, sequence: seq, at: .seconds(1)))
        #expect(!accepted(&state, from: a, sequence: seq &+ 1, at: .seconds(1)))
        #expect(!accepted(&state, from: a, sequence: 0, at: .seconds(1)))
        // An IPv4 target is not answered by the IPv6 address that maps it.
        #expect(!accepted(&state, from: IPAddress(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1])!, sequence: seq, at: .seconds(1)))
        #expect(!state.reachable(at: .seconds(1)))
        #expect(accepted(&state, from: a, sequence: seq, at: .seconds(1)))
        // A duplicate does not count twice (and changes nothing).
        #expect(!accepted(&state, from: a, sequence: seq, at: .seconds(2)))
        #expect(state.lastAnswer == [.seconds(1), nil])
    }

    @Test func staleSequencesAreForgotten() {
        var state = ProbeState(targets: [a], window: .seconds(3))
        let old = state.beginRound(at: .seconds(0))
        for t in 1...5 { _ = state.beginRound(at: .seconds(Int64(t))) }
        // Sent 5 s ago, beyond the window: a reply to it says nothing about now.
        #expect(!accepted(&state, from: a, sequence: old, at: .seconds(5)))
        #expect(state.outstanding.count == 3)
        #expect(!state.reachable(at: .seconds(5)))
    }

    @Test func lateAnswerToAnOlderRoundDoesNotMoveTheStampBack() {
        var state = ProbeState(targets: [a], window: .seconds(3))
        let first = state.beginRound(at: .seconds(1))
        let second = state.beginRound(at: .seconds(2))
        #expect(accepted(&state, from: a, sequence: second, at: .milliseconds(2_010)))
        #expect(!accepted(&state, from: a, sequence: first, at: .milliseconds(2_020)))
        #expect(state.lastAnswer == [.seconds(2)])
    }

    @Test func sequenceWraps() {
        var state = ProbeState(targets: [a], window: .seconds(3))
        var seq: UInt16 = 0
        for t in 0..<65_536 { seq = state.beginRound(at: .seconds(Int64(t))) }
        #expect(seq == 0)
        let next = state.beginRound(at: .seconds(65_536))
        #expect(next == 1)
        #expect(accepted(&state, from: a, sequence: next, at: .seconds(65_536)))
        #expect(state.reachable(at: .seconds(65_538)))
    }

    @Test func expiryIsTheEarliestFutureOne() {
        var state = ProbeState(targets: [a, b], window: .seconds(3))
        let s1 = state.beginRound(at: .seconds(1))
        #expect(accepted(&state, from: a, sequence: s1, at: .seconds(1)))
        let s2 = state.beginRound(at: .seconds(2))
        #expect(accepted(&state, from: b, sequence: s2, at: .seconds(2)))
        #expect(state.nextExpiry(after: .seconds(2)) == .seconds(4))
        #expect(state.nextExpiry(after: .seconds(4)) == .seconds(5))
        #expect(state.reachable(at: .milliseconds(4_500)))
        #expect(!state.isReachable(0, at: .milliseconds(4_500)))
    }

    @Test func echoPackets() {
        #expect(TieBreakerProbe.echoRequest(ipv6: false, sequence: 0x1234).prefix(8) == [8, 0, 0, 0, 0, 0, 0x12, 0x34])
        #expect(TieBreakerProbe.echoRequest(ipv6: true, sequence: 7).prefix(8) == [128, 0, 0, 0, 0, 0, 0, 7])
        #expect(TieBreakerProbe.echoReplySequence([0, 0, 0xab, 0xcd, 0x01, 0x02, 0x12, 0x34, 1, 2][...], ipv6: false) == 0x1234)
        #expect(TieBreakerProbe.echoReplySequence([129, 0, 0, 0, 0, 0, 0, 9][...], ipv6: true) == 9)
        // The wrong type for the family, a non-zero code, a short packet: not an echo reply.
        #expect(TieBreakerProbe.echoReplySequence([129, 0, 0, 0, 0, 0, 0, 9][...], ipv6: false) == nil)
        #expect(TieBreakerProbe.echoReplySequence([8, 0, 0, 0, 0, 0, 0, 9][...], ipv6: false) == nil)
        #expect(TieBreakerProbe.echoReplySequence([0, 1, 0, 0, 0, 0, 0, 9][...], ipv6: false) == nil)
        #expect(TieBreakerProbe.echoReplySequence([0, 0, 0, 0, 0, 0, 0][...], ipv6: false) == nil)
    }
}

/// `state.accept` outside the #expect macro (which cannot take a mutating call).
private func accepted(_ state: inout ProbeState, from source: IPAddress, sequence: UInt16, at now: Duration) -> Bool {
    state.accept(from: source, sequence: sequence, at: now)
}

/// `count` rounds a second apart from `start`, each answered by `a` 1 ms after it left; `after`
/// runs after each with the time of the next round. Returns that time.
private func answeredRounds(
    _ state: inout ProbeState, _ count: Int, from start: Duration, after: (Duration, ProbeState) -> Void = { _, _ in }
) -> Duration {
    var clock = start
    for _ in 0..<count {
        let seq = state.beginRound(at: clock)
        #expect(accepted(&state, from: a, sequence: seq, at: clock + .milliseconds(1)))
        clock += .seconds(1)
        after(clock, state)
    }
    return clock
}

// MARK: Real packets

/// The probe on real ICMP sockets, in a network namespace of its own.
///
/// Choice: the body runs on a dedicated pthread that calls unshare(CLONE_NEWNET), which moves
/// that thread alone into a fresh network namespace (the rest of the test process, and the
/// host, are untouched; the namespace disappears with the thread). There the thread brings `lo`
/// up (ioctl SIOCSIFFLAGS) and sets the namespace's own sysctls through /proc/sys/net, which
/// resolves to the calling thread's namespace. So the only packets sent go to 127.0.0.1 and
/// ::1 of that namespace; 198.18.0.1 (the benchmarking range) has no route there at all.
/// The host's net.ipv4.ping_group_range is checked unchanged afterwards.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs CAP_SYS_ADMIN for unshare(CLONE_NEWNET)"))
struct TieBreakerPackets {
    @Test func inAPrivateNetworkNamespace() throws {
        let hostRange = readFile("/proc/sys/net/ipv4/ping_group_range")
        let report = onDedicatedThread { () -> [String] in
            var failures: [String] = []
            func check(_ condition: Bool, _ what: String) { if !condition { failures.append(what) } }
            guard unshareNetwork() == 0 else { return ["unshare(CLONE_NEWNET): \(String(cString: strerror(errno)))"] }
            guard bringLoopbackUp() else { return ["cannot bring lo up: \(String(cString: strerror(errno)))"] }
            guard let loop = try? EventLoop() else { return ["no event loop"] }
            let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
            let local4 = IPAddress.v4(127, 0, 0, 1)
            let local6 = IPAddress("::1")!
            let unrouted = IPAddress.v4(198, 18, 0, 1)

            // 1. The kernel's default range "1 0" refuses ping sockets even to root: unreachable, no throw.
            check(readFile("/proc/sys/net/ipv4/ping_group_range") == "1\t0", "fresh namespace range")
            var refusedChanges: [Bool] = []
            do {
                let probe = try TieBreakerProbe(
                    targets: [local4], loop: loop, interval: .milliseconds(50), window: .milliseconds(150),
                    logger: logger) { refusedChanges.append($0) }
                probe.start()
                _ = try? loop.run(until: EventLoop.clockNow + .milliseconds(300)) { false }
                check(!probe.reachable, "refused socket: unreachable")
                probe.stop()
            } catch {
                failures.append("refused socket threw \(error)")
            }
            check(refusedChanges.isEmpty, "refused socket: no change")

            // 2. Allowed: loopback answers on both families; the unrouted target never does.
            check(writeFile("/proc/sys/net/ipv4/ping_group_range", "0 2147483647"), "set ping_group_range")
            var changes: [Bool] = []
            do {
                let probe = try TieBreakerProbe(
                    targets: [unrouted, local4, local6], loop: loop, interval: .milliseconds(50),
                    window: .milliseconds(150), logger: logger) { changes.append($0) }
                probe.start()
                let up = (try? loop.run(until: EventLoop.clockNow + .seconds(2)) {
                    probe.state.isReachable(1, at: loop.now) && probe.state.isReachable(2, at: loop.now)
                }) ?? false
                check(up, "loopback v4 and v6 answer")
                check(probe.reachable && changes == [true], "reachable once: \(changes)")
                check(!probe.state.isReachable(0, at: loop.now), "unrouted target unreachable")

                // 3. IPv4 echo replies switched off in the namespace: after the window, unreachable...
                probe.stop()
                let only4 = try TieBreakerProbe(
                    targets: [local4], loop: loop, interval: .milliseconds(50), window: .milliseconds(150),
                    logger: logger) { changes.append($0) }
                changes = []
                only4.start()
                _ = try? loop.run(until: EventLoop.clockNow + .seconds(2)) { only4.reachable }
                check(changes == [true], "v4 only: reachable \(changes)")
                check(writeFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", "1"), "set icmp_echo_ignore_all")
                let start = EventLoop.clockNow
                _ = try? loop.run(until: start + .seconds(2)) { !only4.reachable }
                let took = EventLoop.clockNow - start
                check(changes == [true, false], "v4 only: unreachable \(changes)")
                check(took < .milliseconds(400), "noticed within the window (+ a round): \(took)")
                // ... and reachable again when it answers.
                check(writeFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", "0"), "clear icmp_echo_ignore_all")
                _ = try? loop.run(until: EventLoop.clockNow + .seconds(2)) { only4.reachable }
                check(changes == [true, false, true], "v4 only: back \(changes)")
                only4.stop()
            } catch {
                failures.append("probe threw \(error)")
            }

            // 4. Only an unrouted target: stays unreachable, no change reported.
            do {
                var silent: [Bool] = []
                let probe = try TieBreakerProbe(
                    targets: [unrouted], loop: loop, interval: .milliseconds(50), window: .milliseconds(150),
                    logger: logger) { silent.append($0) }
                probe.start()
                _ = try? loop.run(until: EventLoop.clockNow + .milliseconds(400)) { false }
                check(!probe.reachable && silent.isEmpty, "unrouted only: unreachable")
            } catch {
                failures.append("unrouted probe threw \(error)")
            }
            return failures
        }
        #expect(report == [])
        #expect(readFile("/proc/sys/net/ipv4/ping_group_range") == hostRange, "the host's setting is untouched")
    }
}

/// Runs `body` on a new pthread and waits for it (namespace changes stay with that thread).
private func onDedicatedThread<T>(_ body: @escaping () -> T) -> T {
    let result = ResultBox<T>()
    let box = Unmanaged.passRetained(ThreadBox { result.value = body() })
    var thread = pthread_t()
    let created = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBox>.fromOpaque(raw!).takeRetainedValue().work()
        return nil
    }, box.toOpaque())
    precondition(created == 0, "pthread_create")
    pthread_join(thread, nil)
    return result.value!
}

private final class ResultBox<T> { var value: T? }
private final class ThreadBox {
    let work: () -> Void
    init(_ work: @escaping () -> Void) { self.work = work }
}

/// unshare(CLONE_NEWNET) for the calling thread. Glibc declares unshare(2) only with
/// _GNU_SOURCE, which the Swift Glibc module is not built with: look it up at run time.
private func unshareNetwork() -> Int32 {
    guard let symbol = dlsym(nil, "unshare") else { return -1 }
    let unshare = unsafeBitCast(symbol, to: (@convention(c) (Int32) -> Int32).self)
    return unshare(0x4000_0000)  // CLONE_NEWNET
}

/// `ip link set lo up` for the calling thread's network namespace.
private func bringLoopbackUp() -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var request = ifreq()
    withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { $0.copyBytes(from: Array("lo".utf8) + [0]) }
    guard ioctl(fd, UInt(SIOCGIFFLAGS), &request) == 0 else { return false }
    request.ifr_ifru.ifru_flags |= Int16(IFF_UP)
    return ioctl(fd, UInt(SIOCSIFFLAGS), &request) == 0
}

private func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    guard fgets(&line, Int32(line.count), file) != nil else { return nil }
    let text = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return text.hasSuffix("\n") ? String(text.dropLast()) : text
}

private func writeFile(_ path: String, _ text: String) -> Bool {
    guard let file = fopen(path, "w") else { return false }
    let ok = fputs(text + "\n", file) >= 0
    return fclose(file) == 0 && ok
}
