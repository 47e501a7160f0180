@testable import DBusKit
import Foundation
import Testing

struct LoopTests {
    @Test func timerFiresAndReschedules() throws {
        let loop = try EventLoop()
        var fired: [Duration] = []
        let start = loop.now
        let timer = try loop.addTimer(at: start + .milliseconds(20)) { fired.append(loop.now) }
        #expect(try loop.run(until: start + .seconds(5)) { fired.count == 1 })
        #expect(fired[0] - start >= .milliseconds(20))
        // One-shot: does not fire again by itself.
        #expect(try !loop.run(until: loop.now + .milliseconds(50)) { fired.count > 1 })
        let again = loop.now
        timer.reschedule(at: again + .milliseconds(10))
        #expect(try loop.run(until: again + .seconds(5)) { fired.count == 2 })
        #expect(fired[1] - again >= .milliseconds(10))
        // Rescheduling a pending timer moves it.
        let t2Start = loop.now
        timer.reschedule(at: t2Start + .seconds(60))
        timer.reschedule(at: t2Start + .milliseconds(5))
        #expect(try loop.run(until: t2Start + .seconds(5)) { fired.count == 3 })
    }

    @Test func cancelledTimerDoesNotFire() throws {
        let loop = try EventLoop()
        var fired = 0
        let timer = try loop.addTimer(at: loop.now + .milliseconds(10)) { fired += 1 }
        timer.cancel()
        timer.cancel()
        timer.reschedule(at: loop.now)  // no effect once cancelled
        var other = false
        let marker = try loop.addTimer(at: loop.now + .milliseconds(30)) { other = true }
        #expect(try loop.run(until: loop.now + .seconds(5)) { other })
        #expect(fired == 0)
        _ = marker
    }

    @Test func droppedTimerIsCancelled() throws {
        let loop = try EventLoop()
        var fired = 0
        do {
            _ = try loop.addTimer(at: loop.now + .milliseconds(5)) { fired += 1 }
        }
        #expect(try !loop.run(until: loop.now + .milliseconds(50)) { fired > 0 })
    }

    @Test func deferredRunsInOrderAtNextIteration() throws {
        let loop = try EventLoop()
        var order: [Int] = []
        var sources: [EventSource] = []
        for i in 0..<10 {
            sources.append(try loop.addDeferred { order.append(i) })
        }
        let cancelled = try loop.addDeferred { order.append(99) }
        cancelled.cancel()
        #expect(order.isEmpty)
        #expect(try loop.run(until: loop.now + .seconds(5)) { order.count == 10 })
        #expect(order == Array(0..<10))
        // One-shot: nothing more.
        try loop.runOnce(timeout: .milliseconds(10))
        #expect(order == Array(0..<10))
        // A deferred source added from a handler runs at a later iteration.
        var nested: [String] = []
        var inner: EventSource?
        let outer = try loop.addDeferred {
            nested.append("outer")
            inner = try? loop.addDeferred { nested.append("inner") }
        }
        #expect(try loop.run(until: loop.now + .seconds(5)) { nested.count == 2 })
        #expect(nested == ["outer", "inner"])
        _ = (sources, outer, inner)
    }

    @Test func readableFd() throws {
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        var reads = 0
        let source = try loop.addReadable(fd: fds[0]) {
            var byte: UInt8 = 0
            _ = read(fds[0], &byte, 1)
            reads += 1
        }
        #expect(try !loop.run(until: loop.now + .milliseconds(20)) { reads > 0 })
        var byte: UInt8 = 1
        _ = write(fds[1], &byte, 1)
        _ = write(fds[1], &byte, 1)
        #expect(try loop.run(until: loop.now + .seconds(5)) { reads == 2 })  // level-triggered
        source.cancel()
        _ = write(fds[1], &byte, 1)
        try loop.runOnce(timeout: .milliseconds(20))
        #expect(reads == 2)
    }

    @Test func signalSource() throws {
        let loop = try EventLoop()
        var got = 0
        let source = try loop.addSignal(SIGUSR2) { got += 1 }
        pthread_kill(pthread_self(), SIGUSR2)
        #expect(try loop.run(until: loop.now + .seconds(5)) { got == 1 })
        source.cancel()
    }

    @Test func exitStopsRunAndRunOnce() throws {
        let loop = try EventLoop()
        let t = try loop.addTimer(at: loop.now + .milliseconds(5)) { loop.exit(code: 3) }
        #expect(try loop.run() == 3)
        #expect(try loop.runOnce(timeout: .milliseconds(1)) == false)
        _ = t
    }

    @Test func runOnceThenExit() throws {
        let loop = try EventLoop()
        loop.exit(code: 0)
        try loop.runOnce(timeout: .milliseconds(10))
        #expect(try loop.runOnce(timeout: .milliseconds(10)) == false)
    }

    @Test func watchdogDisabledWithoutEnvironment() throws {
        let loop = try EventLoop()
        #expect(loop.enableWatchdog() == (ProcessInfo.processInfo.environment["WATCHDOG_USEC"] != nil))
    }

    @Test(arguments: [
        (Duration.zero, UInt64(0)),
        (.nanoseconds(1), 1),
        (.nanoseconds(999), 1),
        (.nanoseconds(1000), 1),
        (.nanoseconds(1001), 2),
        (.microseconds(5), 5),
        (.milliseconds(1), 1000),
        (.seconds(2) + .nanoseconds(500), 2_000_001),
        (.seconds(-1), 0),
        (.nanoseconds(-1), 0),
        (.seconds(Int64.max), UInt64.max - 1),
        (.seconds(Int64(UInt64.max / 1_000_000)), (UInt64.max / 1_000_000) * 1_000_000),
        (.seconds(Int64(UInt64.max / 1_000_000)) + .seconds(1), UInt64.max - 1),
    ])
    func durationToMicroseconds(_ d: Duration, _ expected: UInt64) {
        #expect(Microseconds.from(d) == expected)
    }

    @Test func microsecondsToDuration() {
        #expect(Microseconds.duration(2_000_001) == .seconds(2) + .microseconds(1))
        #expect(Microseconds.from(Microseconds.duration(123_456_789)) == 123_456_789)
    }
}
