@testable import DBusKit
import Glibc
import Synchronization
import Testing

struct WorkTests {
    @Test func workRunsOffTheLoopAndCompletesOnIt() throws {
        let loop = try EventLoop()
        let loopThread = pthread_self()
        var results: [Int] = []
        var completedOnLoop = true
        let workerThreads = Mutex<[pthread_t]>([])
        for n in 0..<8 {
            try loop.perform({
                workerThreads.withLock { $0.append(pthread_self()) }
                return n * n
            }) { value in
                completedOnLoop = completedOnLoop && pthread_equal(pthread_self(), loopThread) != 0
                results.append(value)
            }
        }
        #expect(try loop.run(until: loop.now + .seconds(10)) { results.count == 8 })
        #expect(results.sorted() == [0, 1, 4, 9, 16, 25, 36, 49])
        #expect(completedOnLoop)
        #expect(workerThreads.withLock { $0.allSatisfy { pthread_equal($0, loopThread) == 0 } })
    }

    @Test func theLoopKeepsServingWhileWorkBlocks() throws {
        let loop = try EventLoop()
        let release = Mutex(false)
        var order: [String] = []
        try loop.perform({
            // Blocks until the loop has shown it is still running timers.
            for _ in 0..<5_000 {
                if release.withLock({ $0 }) { break }
                usleep(1_000)
            }
            return "work"
        }) { order.append($0) }
        let timer = try loop.addTimer(at: loop.now + .milliseconds(5)) {
            order.append("timer")
            release.withLock { $0 = true }
        }
        #expect(try loop.run(until: loop.now + .seconds(10)) { order.count == 2 })
        #expect(order == ["timer", "work"])
        _ = timer
    }
}
