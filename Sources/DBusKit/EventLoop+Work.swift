// Blocking work off the loop thread, with its result delivered back on the loop.
//
// The loop must keep serving the bus while something slow runs (a libpq
// promotion, a pg_rewind): `perform` runs the work on a detached thread and
// hands the result back through a Mutex-guarded inbox and an eventfd the loop
// watches — the swift-subprocess model. The completion runs on the loop thread.
import CSystemd
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension EventLoop {
    /// Runs `work` on a new thread; then `completion(result)` on this loop's thread.
    /// `work` must not touch the loop or its bus connections.
    public func perform<T: Sendable>(
        _ work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void
    ) throws(SystemError) {
        if workDispatcher == nil { workDispatcher = try WorkDispatcher(loop: self) }
        try workDispatcher!.start(work, completion: completion)
    }
}

final class WorkDispatcher {
    /// The thread-shared half: finished results and the eventfd that wakes the loop.
    final class Inbox: Sendable {
        let fd: Int32
        let finished = Mutex<[(id: UInt64, value: any Sendable)]>([])
        init(fd: Int32) { self.fd = fd }
        deinit { close(fd) }

        func deliver(_ id: UInt64, _ value: any Sendable) {
            finished.withLock { $0.append((id, value)) }
            var one: UInt64 = 1
            _ = write(fd, &one, 8)
        }
    }

    /// A unit of work handed to a thread; owned by that thread (passRetained/takeRetained).
    final class Job: Sendable {
        let id: UInt64
        let inbox: Inbox
        let body: @Sendable () -> any Sendable
        init(id: UInt64, inbox: Inbox, body: @escaping @Sendable () -> any Sendable) {
            self.id = id
            self.inbox = inbox
            self.body = body
        }
    }

    let inbox: Inbox
    var source: EventSource?
    var completions: [UInt64: (any Sendable) -> Void] = [:]
    var nextID: UInt64 = 0

    init(loop: EventLoop) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard fd >= 0 else { throw SystemError(operation: "eventfd", errno: errno) }
        inbox = Inbox(fd: fd)
        // The dispatcher lives as long as the loop (stored in it), so unowned is safe.
        source = try loop.addReadable(fd: fd) { [unowned self] in self.drain() }
    }

    func start<T: Sendable>(_ work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void) throws(SystemError) {
        nextID += 1
        let id = nextID
        completions[id] = { value in
            // The inbox only carries what `work` returned for this id: a T.
            guard let result = value as? T else { preconditionFailure("work result of the wrong type") }
            completion(result)
        }
        let job = Unmanaged.passRetained(Job(id: id, inbox: inbox, body: { work() }))
        var thread = pthread_t()
        let r = pthread_create(&thread, nil, { context in
            let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
            job.inbox.deliver(job.id, job.body())
            return nil
        }, job.toOpaque())
        guard r == 0 else {
            job.release()
            completions[id] = nil
            throw SystemError(operation: "pthread_create", errno: r)
        }
        pthread_detach(thread)
    }

    func drain() {
        var counter: UInt64 = 0
        _ = read(inbox.fd, &counter, 8)
        let ready = inbox.finished.withLock { items in
            defer { items.removeAll() }
            return items
        }
        for (id, value) in ready {
            completions.removeValue(forKey: id)?(value)
        }
    }
}
