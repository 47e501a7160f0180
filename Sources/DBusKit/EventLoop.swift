import CSystemd
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An sd-event loop. Single-threaded: the loop, its sources and the bus
/// connections attached to it are confined to the thread that created them,
/// and every handler runs on that thread.
public final class EventLoop {
    let event: OpaquePointer
    /// The single defer source serving `addDeferred`, and its FIFO queue.
    private var deferSource: OpaquePointer?
    private var deferred: [DeferredEntry] = []
    /// Delivers the results of `perform` (created on first use).
    var workDispatcher: WorkDispatcher?

    public init() throws(SystemError) {
        var e: OpaquePointer?
        let r = sd_event_new(&e)
        guard r >= 0, let e else { throw SystemError("sd_event_new", returned: r) }
        event = e
    }

    deinit {
        if let deferSource { sd_event_source_disable_unref(deferSource) }
        sd_event_unref(event)
    }

    /// CLOCK_MONOTONIC time of the current loop iteration (the current time
    /// before the first iteration).
    public var now: Duration {
        var usec: UInt64 = 0
        if sd_event_now(event, CLOCK_MONOTONIC, &usec) < 0 {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return .seconds(Int64(ts.tv_sec)) + .nanoseconds(Int64(ts.tv_nsec))
        }
        return Microseconds.duration(usec)
    }

    /// CLOCK_MONOTONIC now, read from the clock (`now` is the cached time of the
    /// current iteration, the same for everything one iteration does).
    public static var clockNow: Duration {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return .seconds(Int64(ts.tv_sec)) + .nanoseconds(Int64(ts.tv_nsec))
    }

    /// Runs the loop until `exit(code:)`; returns the exit code.
    public func run() throws(SystemError) -> Int32 {
        let r = sd_event_loop(event)
        guard r >= 0 else { throw SystemError("sd_event_loop", returned: r) }
        return r
    }

    public func exit(code: Int32 = 0) {
        _ = sd_event_exit(event, code)
    }

    private var finished: Bool {
        sd_event_get_state(event) == Int32(SD_EVENT_FINISHED)
    }

    /// Runs one iteration waiting at most `timeout`; for tests and CLIs.
    /// Returns false if the loop has exited.
    @discardableResult
    public func runOnce(timeout: Duration) throws(SystemError) -> Bool {
        if finished { return false }
        let r = sd_event_run(event, Microseconds.from(timeout))
        guard r >= 0 else { throw SystemError("sd_event_run", returned: r) }
        return !finished
    }

    /// Runs iterations until `condition()` is true or `deadline` (monotonic, as
    /// `now`) passes; returns `condition()`. For tests and CLIs.
    public func run(until deadline: Duration, _ condition: () -> Bool) throws(SystemError) -> Bool {
        while !condition() {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let current = Duration.seconds(Int64(ts.tv_sec)) + .nanoseconds(Int64(ts.tv_nsec))
            if current >= deadline { break }
            guard try runOnce(timeout: deadline - current) else { break }
        }
        return condition()
    }

    /// A one-shot CLOCK_MONOTONIC timer at `deadline` (same clock as `now`).
    public func addTimer(at deadline: Duration, accuracy: Duration = .milliseconds(1),
                         _ handler: @escaping () -> Void) throws(SystemError) -> TimerSource {
        let box = Unmanaged.passRetained(HandlerBox(handler))
        var source: OpaquePointer?
        let r = sd_event_add_time(event, &source, CLOCK_MONOTONIC, Microseconds.from(deadline),
                                  Microseconds.from(accuracy), { _, _, userdata in
            HandlerBox.fire(userdata)
            return 0
        }, box.toOpaque())
        guard r >= 0, let source else {
            box.release()
            throw SystemError("sd_event_add_time", returned: r)
        }
        EventSource.adopt(source, box)
        return TimerSource(source)
    }

    /// Calls `handler` whenever `fd` is readable (EPOLLIN, level-triggered).
    /// Does not own `fd`; cancel the source before closing it.
    public func addReadable(fd: Int32, _ handler: @escaping () -> Void) throws(SystemError) -> EventSource {
        try addIO(fd: fd, events: UInt32(EPOLLIN.rawValue), handler)
    }

    /// Calls `handler` whenever `fd` is writable (EPOLLOUT, level-triggered): e.g. when a
    /// non-blocking connect completes. Does not own `fd`; cancel the source before closing it,
    /// and as soon as there is nothing more to write (it keeps firing while the fd is writable).
    public func addWritable(fd: Int32, _ handler: @escaping () -> Void) throws(SystemError) -> EventSource {
        try addIO(fd: fd, events: UInt32(EPOLLOUT.rawValue), handler)
    }

    private func addIO(fd: Int32, events: UInt32, _ handler: @escaping () -> Void) throws(SystemError) -> EventSource {
        let box = Unmanaged.passRetained(HandlerBox(handler))
        var source: OpaquePointer?
        let r = sd_event_add_io(event, &source, fd, events, { _, _, _, userdata in
            HandlerBox.fire(userdata)
            return 0
        }, box.toOpaque())
        guard r >= 0, let source else {
            box.release()
            throw SystemError("sd_event_add_io", returned: r)
        }
        EventSource.adopt(source, box)
        return EventSource(source)
    }

    /// Calls `handler` when `signal` is delivered (via signalfd). Blocks the signal
    /// in the calling thread with pthread_sigmask first; since threads inherit the
    /// mask at creation, the process should block the signal on its main thread
    /// before creating other threads, or they may still receive it.
    public func addSignal(_ signal: Int32, _ handler: @escaping () -> Void) throws(SystemError) -> EventSource {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        let m = pthread_sigmask(SIG_BLOCK, &set, nil)
        guard m == 0 else { throw SystemError(operation: "pthread_sigmask", errno: m) }
        let box = Unmanaged.passRetained(HandlerBox(handler))
        var source: OpaquePointer?
        let r = sd_event_add_signal(event, &source, signal, { _, _, userdata in
            HandlerBox.fire(userdata)
            return 0
        }, box.toOpaque())
        guard r >= 0, let source else {
            box.release()
            throw SystemError("sd_event_add_signal", returned: r)
        }
        EventSource.adopt(source, box)
        return EventSource(source)
    }

    /// Runs `handler` once, at the next loop iteration. Deferred handlers run in
    /// the order they were added (sd-event alone does not order same-priority
    /// defer sources, so one defer source drains a FIFO queue); a handler added
    /// while the queue is being drained runs at the following iteration.
    /// Keep the returned source alive until then: cancel() or deinit drop it.
    public func addDeferred(_ handler: @escaping () -> Void) throws(SystemError) -> EventSource {
        if deferSource == nil {
            var source: OpaquePointer?
            // passUnretained: the loop owns this source and frees it in deinit,
            // so the loop outlives the registration.
            let r = sd_event_add_defer(event, &source, { _, userdata in
                guard let userdata else { return 0 }
                Unmanaged<EventLoop>.fromOpaque(userdata).takeUnretainedValue().drainDeferred()
                return 0
            }, Unmanaged.passUnretained(self).toOpaque())
            guard r >= 0, let source else { throw SystemError("sd_event_add_defer", returned: r) }
            deferSource = source
        }
        let entry = DeferredEntry(handler)
        deferred.append(entry)
        let r = sd_event_source_set_enabled(deferSource, Int32(SD_EVENT_ONESHOT))
        guard r >= 0 else {
            deferred.removeLast()
            throw SystemError("sd_event_source_set_enabled", returned: r)
        }
        let source = EventSource(nil)
        source.onCancel = { entry.handler = nil }
        return source
    }

    private func drainDeferred() {
        let batch = deferred
        deferred.removeAll()
        for entry in batch {
            if let handler = entry.handler {
                entry.handler = nil
                handler()
            }
        }
    }

    /// Enables sd-event's watchdog support: when the service manager set
    /// WATCHDOG_USEC for this process, the loop sends WATCHDOG=1 at half that
    /// period. Returns whether the watchdog is now enabled.
    public func enableWatchdog() -> Bool {
        sd_event_set_watchdog(event, 1) > 0
    }
}

/// Holds a Swift closure for a C callback. The C side owns one retain
/// (passRetained), released by the source's destroy callback.
final class HandlerBox {
    let handler: () -> Void
    init(_ handler: @escaping () -> Void) { self.handler = handler }

    static func fire(_ userdata: UnsafeMutableRawPointer?) {
        guard let userdata else { return }
        Unmanaged<HandlerBox>.fromOpaque(userdata).takeUnretainedValue().handler()
    }
}

/// A handler queued by `addDeferred`; `handler` is nil once run or cancelled.
final class DeferredEntry {
    var handler: (() -> Void)?
    init(_ handler: @escaping () -> Void) { self.handler = handler }
}

/// A registered event source. It stays registered while this object is alive;
/// `cancel()` (or deinit) removes it.
public class EventSource {
    var source: OpaquePointer?
    /// For sources that are not sd-event sources of their own (deferred handlers).
    var onCancel: (() -> Void)?

    init(_ source: OpaquePointer?) {
        self.source = source
    }

    /// Installs the destroy callback releasing the HandlerBox retained for the
    /// C side: it runs when sd-event frees the source, whichever way that happens.
    static func adopt(_ source: OpaquePointer, _ box: Unmanaged<HandlerBox>) {
        _ = sd_event_source_set_destroy_callback(source) { userdata in
            if let userdata { Unmanaged<HandlerBox>.fromOpaque(userdata).release() }
        }
    }

    /// Removes the source. Idempotent. Safe from inside its own handler.
    public func cancel() {
        if let source {
            self.source = nil
            _ = sd_event_source_disable_unref(source)
        }
        if let onCancel {
            self.onCancel = nil
            onCancel()
        }
    }

    deinit {
        cancel()
    }
}

/// A one-shot timer.
public final class TimerSource: EventSource {
    /// Re-arms the timer (whether it already fired or not) to fire once at `deadline`.
    /// Has no effect on a cancelled timer.
    public func reschedule(at deadline: Duration) {
        guard let source else { return }
        _ = sd_event_source_set_time(source, Microseconds.from(deadline))
        _ = sd_event_source_set_enabled(source, Int32(SD_EVENT_ONESHOT))
    }
}
