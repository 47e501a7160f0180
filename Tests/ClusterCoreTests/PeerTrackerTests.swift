import ClusterCore
import Testing

let standardTiming = PeerTracker.Timing(interval: .milliseconds(200), warn: .milliseconds(600), dead: .milliseconds(1000))

func makeTracker(links: Int = 1, minimumGeneration: UInt64 = 0) -> PeerTracker {
    PeerTracker(
        cluster: "kusu", peer: "installer", linkCount: links, timing: standardTiming, start: .ms(0),
        minimumGeneration: minimumGeneration
    )
}

/// One step of a table-driven scenario, on a virtual clock (instants in ms, or ns offsets).
struct Step {
    enum Action {
        case receive(Heartbeat, link: Int, at: MonotonicInstant, wallClock: UInt64)
        case advance(MonotonicInstant)
    }

    var action: Action
    var events: [PeerEvent]
    var rejected: PacketRejection?
    var state: PeerState

    static func receive(
        link: Int = 0, seq: UInt64, gen: UInt64 = 1, at ms: Int, role: NodeRole = .active, epoch: UInt64 = 1,
        wallClock: UInt64? = nil, _ events: [PeerEvent], _ state: PeerState
    ) -> Step {
        let hb = heartbeat(link: UInt8(clamping: link), generation: gen, sequence: seq, role: role, epoch: epoch)
        let wall = wallClock ?? 1_700_000_000_000_000 + UInt64(ms) * 1000
        return Step(action: .receive(hb, link: link, at: .ms(ms), wallClock: wall), events: events, state: state)
    }

    static func reject(_ hb: Heartbeat, link: Int = 0, at ms: Int, _ rejection: PacketRejection, _ state: PeerState) -> Step {
        Step(action: .receive(hb, link: link, at: .ms(ms), wallClock: 1), events: [], rejected: rejection, state: state)
    }

    static func advance(_ instant: MonotonicInstant, _ events: [PeerEvent], _ state: PeerState) -> Step {
        Step(action: .advance(instant), events: events, state: state)
    }

    static func advance(_ ms: Int, _ events: [PeerEvent], _ state: PeerState) -> Step {
        advance(.ms(ms), events, state)
    }
}

/// Runs `steps`, checking each one's events and the state after it.
@discardableResult
func run(_ steps: [Step], on tracker: inout PeerTracker, sourceLocation: SourceLocation = #_sourceLocation) -> PeerTracker {
    for (index, step) in steps.enumerated() {
        switch step.action {
        case let .receive(hb, link, instant, wallClock):
            let before = tracker
            let result = tracker.receive(hb, onLink: link, at: instant, wallClock: wallClock)
            if let rejection = step.rejected {
                #expect(result == .failure(rejection), "step \(index)", sourceLocation: sourceLocation)
                #expect(tracker == before, "step \(index): a rejected packet changed state", sourceLocation: sourceLocation)
            } else {
                #expect(result == .success(step.events), "step \(index)", sourceLocation: sourceLocation)
            }
        case let .advance(instant):
            #expect(tracker.advance(to: instant) == step.events, "step \(index)", sourceLocation: sourceLocation)
        }
        #expect(tracker.state == step.state, "step \(index)", sourceLocation: sourceLocation)
    }
    return tracker
}

let firstPacket: [PeerEvent] = [
    .linkChanged(link: 0, up: true), .stateChanged(from: .unknown, to: .alive), .roleChanged(.active), .epochChanged(1),
    .seen,
]
let ns = Duration.nanoseconds(1)

@Suite struct PeerTrackerTests {
    @Test func startupUnknownToAlive() {
        var tracker = makeTracker()
        #expect(tracker.state == .unknown)
        #expect(tracker.links == [PeerTracker.LinkStatus()])
        run([
            .advance(500, [], .unknown),
            .receive(seq: 1, at: 700, wallClock: 42, firstPacket, .alive),
        ], on: &tracker)
        #expect(tracker.links == [PeerTracker.LinkStatus(up: true, lastSeen: .ms(700), lastSeenWallClock: 42)])
        #expect(tracker.lastSeenWallClock == 42)
        #expect(tracker.peerRole == .active)
        #expect(tracker.peerEpoch == 1)
        #expect(tracker.peerGeneration == 1)
    }

    @Test func startupUnknownToDead() {
        var tracker = makeTracker()
        run([
            .advance(.ms(1000) - ns, [], .unknown),
            .advance(1000, [.stateChanged(from: .unknown, to: .dead)], .dead),
            .advance(5000, [], .dead),
            .receive(seq: 1, at: 6000, [.linkChanged(link: 0, up: true), .stateChanged(from: .dead, to: .alive),
                                        .roleChanged(.active), .epochChanged(1), .seen], .alive),
        ], on: &tracker)
    }

    @Test func aliveLateDeadAtExactBoundaries() {
        var tracker = makeTracker()
        run([
            .receive(seq: 1, at: 0, firstPacket, .alive),
            .advance(.ms(600) - ns, [], .alive),
            .advance(600, [.stateChanged(from: .alive, to: .late)], .late),
            .advance(.ms(1000) - ns, [], .late),
            .advance(1000, [.linkChanged(link: 0, up: false), .stateChanged(from: .late, to: .dead)], .dead),
            // recovery
            .receive(seq: 2, at: 1500, [.linkChanged(link: 0, up: true), .stateChanged(from: .dead, to: .alive), .seen], .alive),
            .advance(2000, [], .alive),
            .advance(2100, [.stateChanged(from: .alive, to: .late)], .late),
            .receive(seq: 3, at: 2200, [.stateChanged(from: .late, to: .alive), .seen], .alive),
        ], on: &tracker)
    }

    @Test func aJumpPastDeadStepsThroughLate() {
        var tracker = makeTracker()
        run([
            .receive(seq: 1, at: 0, firstPacket, .alive),
            .advance(10_000, [.linkChanged(link: 0, up: false), .stateChanged(from: .alive, to: .late),
                              .stateChanged(from: .late, to: .dead)], .dead),
        ], on: &tracker)
        #expect(tracker.nextDeadline == nil)
    }

    /// A packet arriving exactly at a deadline counts first; a timer that ran first does not.
    @Test func packetAtTheDeadlineWins() {
        var tracker = makeTracker()
        run([
            .receive(seq: 1, at: 0, firstPacket, .alive),
            .receive(seq: 2, at: 600, [.seen], .alive),
            .advance(1200, [.stateChanged(from: .alive, to: .late)], .late),
            .receive(seq: 3, at: 1200, [.stateChanged(from: .late, to: .alive), .seen], .alive),
            // Packets that arrive late pass through the transitions that fell strictly before them.
            .receive(seq: 4, at: 2300, [.linkChanged(link: 0, up: false), .stateChanged(from: .alive, to: .late),
                                        .stateChanged(from: .late, to: .dead), .linkChanged(link: 0, up: true),
                                        .stateChanged(from: .dead, to: .alive), .seen], .alive),
        ], on: &tracker)
    }

    @Test func twoLinksOneSilent() {
        var tracker = makeTracker(links: 2)
        var steps: [Step] = [
            .receive(link: 0, seq: 1, at: 0, firstPacket, .alive),
            .receive(link: 1, seq: 1, at: 0, [.linkChanged(link: 1, up: true), .seen], .alive),
        ]
        for (k, t) in stride(from: 200, through: 2000, by: 200).enumerated() {
            steps.append(.receive(link: 0, seq: UInt64(k + 2), at: t, [.seen], .alive))
            steps.append(.advance(t + 100, t + 100 == 1100 ? [.linkChanged(link: 1, up: false)] : [], .alive))
        }
        run(steps, on: &tracker)
        #expect(tracker.links.map(\.up) == [true, false])
        #expect(tracker.links[1].lastSeen == .ms(0))
        // The silent link comes back.
        run([.receive(link: 1, seq: 2, at: 2150, [.linkChanged(link: 1, up: true), .seen], .alive)], on: &tracker)
    }

    @Test func allLinksSilentDeadExactlyAtLastPlusDead() {
        var tracker = makeTracker(links: 2)
        run([
            .receive(link: 0, seq: 1, at: 300, firstPacket, .alive),
            .receive(link: 1, seq: 1, at: 500, [.linkChanged(link: 1, up: true), .seen], .alive),
            .advance(.ms(1100) - ns, [], .alive),
            .advance(1100, [.stateChanged(from: .alive, to: .late)], .late),
            .advance(.ms(1300) - ns, [], .late),
            .advance(1300, [.linkChanged(link: 0, up: false)], .late),
            .advance(.ms(1500) - ns, [], .late),
            .advance(1500, [.linkChanged(link: 1, up: false), .stateChanged(from: .late, to: .dead)], .dead),
        ], on: &tracker)
        #expect(tracker.nextDeadline == nil)
    }

    @Test func restartWithANewGeneration() {
        var tracker = makeTracker(links: 2)
        run([
            .receive(link: 0, seq: 5, gen: 7, at: 0, firstPacket, .alive),
            .receive(link: 1, seq: 9, gen: 7, at: 10, [.linkChanged(link: 1, up: true), .seen], .alive),
            .receive(link: 0, seq: 1, gen: 8, at: 200, role: .standby, epoch: 2,
                     [.restarted(generation: 8), .roleChanged(.standby), .epochChanged(2), .seen], .alive),
            // Sequences restarted on every link.
            .receive(link: 1, seq: 1, gen: 8, at: 210, role: .standby, epoch: 2, [.seen], .alive),
            .reject(heartbeat(generation: 7, sequence: 6), at: 300, .replayed, .alive),
            .reject(heartbeat(generation: 8, sequence: 1), at: 300, .replayed, .alive),
            .reject(heartbeat(link: 1, generation: 8, sequence: 0), link: 1, at: 300, .replayed, .alive),
            .receive(link: 0, seq: 2, gen: 8, at: 400, role: .standby, epoch: 2, [.seen], .alive),
        ], on: &tracker)
        #expect(tracker.peerGeneration == 8)
    }

    @Test func replaysChangeNothing() {
        var tracker = makeTracker(minimumGeneration: 5)
        run([
            .reject(heartbeat(generation: 4, sequence: 100), at: 0, .replayed, .unknown),
            .receive(seq: 10, gen: 5, at: 100, firstPacket, .alive),
            .reject(heartbeat(generation: 5, sequence: 10), at: 200, .replayed, .alive),
            .reject(heartbeat(generation: 5, sequence: 9), at: 200, .replayed, .alive),
            .reject(heartbeat(generation: 4, sequence: 11), at: 200, .replayed, .alive),
            // A late replay does not even apply the due transitions.
            .reject(heartbeat(generation: 5, sequence: 3), at: 5000, .replayed, .alive),
            .receive(seq: 11, gen: 5, at: 300, [.seen], .alive),
        ], on: &tracker)
        #expect(tracker.lastSeen == .ms(300))
    }

    @Test func wrongLinkClusterOrSender() {
        var tracker = makeTracker(links: 2)
        run([
            .reject(heartbeat(link: 1, sequence: 1), link: 0, at: 0, .wrongLink, .unknown),
            .reject(heartbeat(link: 2, sequence: 1), link: 2, at: 0, .wrongLink, .unknown),
            .reject(heartbeat(link: 0, sequence: 1), link: -1, at: 0, .wrongLink, .unknown),
            .reject(heartbeat(sequence: 1, cluster: "other"), at: 0, .wrongCluster, .unknown),
            .reject(heartbeat(sequence: 1, node: "failover"), at: 0, .unknownSender, .unknown),
            .reject(heartbeat(sequence: 1, node: "intruder"), at: 0, .unknownSender, .unknown),
            .receive(seq: 1, at: 0, firstPacket, .alive),
            .reject(heartbeat(sequence: 2, cluster: "other"), at: 100, .wrongCluster, .alive),
        ], on: &tracker)
    }

    /// The wall clock is published, never used for timing: wild jumps change nothing else.
    @Test func wallClockJumpsChangeNoState() {
        func scenario(_ wallClocks: [UInt64]) -> (events: [[PeerEvent]], tracker: PeerTracker) {
            var tracker = makeTracker()
            var events: [[PeerEvent]] = []
            for (k, wall) in wallClocks.enumerated() {
                let t = k * 250
                events.append(tracker.advance(to: .ms(t) - ns))
                let hb = heartbeat(sequence: UInt64(k + 1), sentAt: wall)
                events.append((try? tracker.receive(hb, onLink: 0, at: .ms(t), wallClock: wall).get()) ?? [])
            }
            events.append(tracker.advance(to: .ms(wallClocks.count * 250 + 2000)))
            return (events, tracker)
        }
        let steady = (0..<12).map { 1_700_000_000_000_000 + UInt64($0) * 250_000 }
        var jumpy = steady
        jumpy[3] = 0
        jumpy[4] = UInt64.max
        jumpy[5] = 1_000
        jumpy[8] = steady[8] + 86_400_000_000 * 365
        jumpy[9] = steady[9] - 3_600_000_000
        let a = scenario(steady)
        let b = scenario(jumpy)
        #expect(a.events == b.events)
        #expect(a.tracker.state == b.tracker.state)
        #expect(a.tracker.links.map(\.up) == b.tracker.links.map(\.up))
        #expect(a.tracker.links.map(\.lastSeen) == b.tracker.links.map(\.lastSeen))
        #expect(b.tracker.lastSeenWallClock == jumpy[11])
        #expect(a.tracker.lastSeenWallClock == steady[11])
    }

    @Test func monotonicTimeNeverGoesBackwards() {
        var tracker = makeTracker()
        run([
            .receive(seq: 1, at: 0, firstPacket, .alive),
            .advance(700, [.stateChanged(from: .alive, to: .late)], .late),
            // Timestamped before the timer that already ran: processed as of T+700.
            .receive(seq: 2, at: 650, [.stateChanged(from: .late, to: .alive), .seen], .alive),
            .advance(600, [], .alive),
        ], on: &tracker)
        #expect(tracker.lastSeen == .ms(700))
        #expect(tracker.nextDeadline == .ms(1300))
    }

    @Test func peerDetailsFollowTheLatestPacket() {
        var tracker = makeTracker()
        var hb = heartbeat(sequence: 1, role: .standby, epoch: 4, lsn: 77)
        hb.maintenance = true
        hb.autoFailover = false
        #expect(tracker.peerAutoFailover == nil)
        _ = tracker.receive(hb, onLink: 0, at: .ms(0), wallClock: 5)
        #expect(tracker.peerRole == .standby)
        #expect(tracker.peerEpoch == 4)
        #expect(tracker.peerLSN == 77)
        #expect(tracker.peerMaintenance == true)
        #expect(tracker.peerAutoFailover == false)
        hb.sequence = 2
        hb.role = .takingOver
        #expect(tracker.receive(hb, onLink: 0, at: .ms(100), wallClock: 6) == .success([.roleChanged(.takingOver), .seen]))
    }
}
