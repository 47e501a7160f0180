import ClusterCore
import Testing

@testable import Monitor

/// The ARP probe started when the peer turned late, as the takeover at "dead" sees it.
@Suite struct EarlyProbeVerdicts {
    static let dead = Duration.milliseconds(1000)

    static func probe(startedAt: Duration, result: SwitchRefusal?? = nil) -> EarlyProbe {
        var probe = EarlyProbe(id: 1, startedAt: startedAt)
        probe.result = result
        return probe
    }

    @Test func aFreshProbeThatFoundTheAddressesFreeIsUsed() {
        // Last heartbeat at 10 s, late at 10.6 s (the probe starts), dead at 11 s.
        let free = Self.probe(startedAt: .milliseconds(10_600), result: .some(nil))
        #expect(free.verdict(lastSeen: .seconds(10), now: .seconds(11), freshFor: Self.dead) == .free)
    }

    @Test func stillRunningIsWaitedFor() {
        #expect(Self.probe(startedAt: .milliseconds(10_600)).verdict(lastSeen: .seconds(10), now: .seconds(11), freshFor: Self.dead) == .pending)
    }

    @Test func anythingElseIsProbedAgain() {
        let inUse = Self.probe(startedAt: .milliseconds(10_600), result: .some(.addressInUse(address: "198.18.0.100", mac: "02:00:00:00:00:01")))
        #expect(inUse.verdict(lastSeen: .seconds(10), now: .seconds(11), freshFor: Self.dead) == .probeAgain)
        let failed = Self.probe(startedAt: .milliseconds(10_600), result: .some(.probeFailed("no such device")))
        #expect(failed.verdict(lastSeen: .seconds(10), now: .seconds(11), freshFor: Self.dead) == .probeAgain)
        // Started before the peer's last heartbeat: it says nothing about the silence.
        let early = Self.probe(startedAt: .milliseconds(9_900), result: .some(nil))
        #expect(early.verdict(lastSeen: .seconds(10), now: .seconds(11), freshFor: Self.dead) == .probeAgain)
        // Too old (a takeover refused for another reason goes ahead later): probe again.
        let stale = Self.probe(startedAt: .milliseconds(10_600), result: .some(nil))
        #expect(stale.verdict(lastSeen: .seconds(10), now: .milliseconds(11_600), freshFor: Self.dead) == .probeAgain)
        #expect(stale.verdict(lastSeen: .seconds(10), now: .milliseconds(11_599), freshFor: Self.dead) == .free)
    }
}
