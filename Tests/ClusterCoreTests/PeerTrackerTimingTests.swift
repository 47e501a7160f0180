import ClusterCore
import Testing

/// Drives a tracker as the shell does: one timer armed at `nextDeadline`, packets in time
/// order, a packet winning a tie with the timer.
struct Harness {
    var tracker: PeerTracker
    var events: [(MonotonicInstant, PeerEvent)] = []
    var states: [PeerState] = []

    init(_ tracker: PeerTracker) { self.tracker = tracker }

    mutating func runTimers(before instant: MonotonicInstant) {
        while let deadline = tracker.nextDeadline, deadline < instant {
            let fired = tracker.advance(to: deadline)
            #expect(!fired.isEmpty, "a deadline fired without an event at \(deadline)")
            record(fired, at: deadline)
        }
    }

    mutating func deliver(_ hb: Heartbeat, link: Int, at instant: MonotonicInstant) {
        runTimers(before: instant)
        switch tracker.receive(hb, onLink: link, at: instant, wallClock: 0) {
        case .success(let fired): record(fired, at: instant)
        case .failure(let rejection): Issue.record("rejected: \(rejection)")
        }
    }

    private mutating func record(_ fired: [PeerEvent], at instant: MonotonicInstant) {
        for event in fired {
            events.append((instant, event))
            if case .stateChanged(_, let to) = event { states.append(to) }
        }
    }
}

@Suite struct PeerTrackerTimingTests {
    /// Heartbeats every 200 ms, warn 600: up to two consecutive losses never make the peer late.
    @Test(arguments: [1, 2, 3, 4, 5])
    func twoConsecutiveLossesNeverGiveLate(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var harness = Harness(makeTracker(links: 1))
        var consecutive = 0
        var dropped = 0
        for k in 0..<2000 {
            let drop = k > 0 && consecutive < 2 && Int.random(in: 0..<3, using: &rng) == 0
            if drop {
                consecutive += 1
                dropped += 1
                continue
            }
            consecutive = 0
            harness.deliver(heartbeat(sequence: UInt64(k + 1)), link: 0, at: .ms(k * 200))
        }
        #expect(dropped > 300)
        #expect(harness.states == [.alive])
    }

    @Test func threeConsecutiveLossesGiveLate() {
        var harness = Harness(makeTracker(links: 1))
        for k in [0, 1, 2, 6, 7] {
            harness.deliver(heartbeat(sequence: UInt64(k + 1)), link: 0, at: .ms(k * 200))
        }
        #expect(harness.states == [.alive, .late, .alive])
        let late = harness.events.first { $0.1 == .stateChanged(from: .alive, to: .late) }
        #expect(late?.0 == .ms(400 + 600))
    }

    /// Random traffic on two links: at every point, advancing to just before `nextDeadline`
    /// yields nothing and advancing to it yields something; with no deadline, nothing ever fires.
    @Test(arguments: [11, 12, 13])
    func nextDeadlineIsExact(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var tracker = makeTracker(links: 2)
        var now = MonotonicInstant.ms(0)
        var sequence: UInt64 = 0
        var generation: UInt64 = 1
        func check(_ tracker: PeerTracker) {
            guard let deadline = tracker.nextDeadline else {
                var copy = tracker
                #expect(copy.advance(to: tracker.now + .seconds(3600)).isEmpty)
                return
            }
            #expect(deadline >= tracker.now)
            if deadline > tracker.now {
                var before = tracker
                #expect(before.advance(to: deadline - .nanoseconds(1)).isEmpty)
            }
            var at = tracker
            #expect(!at.advance(to: deadline).isEmpty)
        }
        check(tracker)
        for _ in 0..<3000 {
            now = now + .milliseconds(Int.random(in: 0...700, using: &rng))
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6:
                let link = Int.random(in: 0..<2, using: &rng)
                sequence += 1
                if Int.random(in: 0..<200, using: &rng) == 0 { generation += 1 }
                let hb = heartbeat(link: UInt8(link), generation: generation, sequence: sequence)
                #expect((try? tracker.receive(hb, onLink: link, at: now, wallClock: 0).get()) != nil)
            default:
                if let deadline = tracker.nextDeadline, Bool.random(using: &rng) {
                    now = max(now, deadline)
                }
                _ = tracker.advance(to: now)
            }
            check(tracker)
        }
    }

    /// Each event happens once: replaying the same trace through a harness yields alternating
    /// link and state transitions that are consistent with the tracker's own view.
    @Test func eventsAreConsistentWithState() {
        var rng = SplitMix64(seed: 99)
        var harness = Harness(makeTracker(links: 3))
        var state = PeerState.unknown
        var up = [false, false, false]
        var t = 0
        for k in 0..<3000 {
            t += Int.random(in: 50...900, using: &rng)
            let link = Int.random(in: 0..<3, using: &rng)
            harness.deliver(heartbeat(link: UInt8(link), sequence: UInt64(k + 1)), link: link, at: .ms(t))
        }
        harness.runTimers(before: .ms(t + 10_000))
        for (_, event) in harness.events {
            switch event {
            case let .stateChanged(from, to):
                #expect(from == state && from != to)
                state = to
            case let .linkChanged(link, isUp):
                #expect(up[link] != isUp)
                up[link] = isUp
            default: break
            }
        }
        #expect(state == harness.tracker.state)
        #expect(state == .dead)
        #expect(up == harness.tracker.links.map(\.up))
    }
}
