import HAClient

/// A fixed moment: 2025-01-01 00:00:00 UTC, in µs.
let now: UInt64 = 1_735_689_600_000_000

/// An active node with a live peer, one link down, one address held, a primary.
func activeStatus() -> ClusterStatus {
    var h = HeartbeatStatus()
    h.clusterName = "kusu"
    h.nodeName = "installer"
    h.role = "active"
    h.epoch = 4
    h.autoFailover = true
    h.maintenance = false
    h.peerName = "failover"
    h.peerState = "alive"
    h.peerRole = "standby"
    h.peerEpoch = 4
    h.peerLastSeenUSec = now - 150_000
    h.links = [
        LinkStatus(name: "link0", peerAddress: "198.18.0.12", up: true, lastSeenUSec: now - 150_000),
        LinkStatus(name: "link1", peerAddress: "198.18.4.12", up: false, lastSeenUSec: now - 95_000_000),
    ]
    h.tieBreakerReachable = true
    h.peerTieBreakerReachable = true
    h.serviceLossReadiness = (true, "")
    h.packetsReceived = 1200
    h.packetsRejected = 3
    h.synchronous = "sync"
    var e = EffectorStatus()
    e.addresses = ["198.18.0.100/24"]
    e.databaseRole = "primary"
    e.databaseTimeline = 2
    e.replicationLagBytes = 1536
    e.databaseLSN = 0x3000060
    e.replicationState = "streaming"
    e.syncState = "sync"
    e.synchronousStandbyNames = "\"failover\""
    e.replicationLagSeconds = 0.0123
    e.replicationSlot = "kusu_failover"
    e.units = [UnitStatus(name: "kusu-ok.service", state: "active"), UnitStatus(name: "kusu-slow.service", state: "activating")]
    e.busy = false
    e.lastOperation = OperationRecord(name: "Takeover", reason: "peer dead", finishedUSec: now - 3_000_000,
                                      success: true, error: "")
    return ClusterStatus(heartbeat: .running(h), effector: .running(e), nowUSec: now)
}

/// kusu-hbd absent, names from the configuration, a standby database, a failed operation.
func standbyWithoutMonitor() -> ClusterStatus {
    var e = EffectorStatus()
    e.databaseRole = "standby"
    e.databaseTimeline = 1
    e.units = [UnitStatus(name: "kusu-ok.service", state: "inactive")]
    e.busy = true
    e.lastOperation = OperationRecord(name: "StartUnits", reason: "StartUnits", finishedUSec: now - 600_000_000,
                                      success: false, error: "kusu-fails.service: failed")
    return ClusterStatus(heartbeat: .unavailable("kusu-hbd is not running"), effector: .running(e),
                         configuredCluster: "kusu", configuredNode: "failover", nowUSec: now)
}
