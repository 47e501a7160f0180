import DBusKit
import HAClient
import Testing

@Suite struct TextRendering {
    @Test func activeNode() {
        #expect(activeStatus().renderText() == """
            cluster kusu, node installer: active, epoch 4
            peer failover: alive, role standby, epoch 4, seen 0.2 s ago
              link0 198.18.0.12: up, seen 0.2 s ago
              link1 198.18.4.12: down, seen 95 s ago
            auto-failover: on, maintenance: off, tie-breaker: reachable (peer: reachable)
            replication: synchronous: commits wait for the standby
            handover if this node loses its service network: ready
            addresses: 198.18.0.100/24
            database: primary, timeline 2, standby streaming (sync), lag 1.5 KiB / 0.0 s, slot kusu_failover
            units: kusu-ok.service active, kusu-slow.service activating
            last operation: Takeover (peer dead) succeeded 3.0 s ago

            """)
    }

    @Test func standbyNotInSyncBehindAndCloning() {
        var h = HeartbeatStatus()
        h.clusterName = "kusu"
        h.nodeName = "failover"
        h.role = "standby"
        h.peerName = "installer"
        h.peerState = "alive"
        h.peerRole = "active"
        h.peerLastSeenUSec = now
        h.synchronous = "async"
        h.failoverReadiness = (false, "the local database is 2097152 bytes behind the peer (limit 1048576)")
        var e = EffectorStatus()
        e.databaseRole = "standby"
        e.databaseTimeline = 3
        e.replicationState = "streaming"
        e.replicationLagBytes = 2_097_152
        e.replicationLagSeconds = 1.25
        e.replicationSlot = "kusu_failover"
        e.progress = "pg_basebackup: 40 % copied"
        h.fileSync = [
            FileTreeStatus(path: "/srv/kusu/repos", state: "synchronised", lastSuccessUSec: now - 12_000_000),
            FileTreeStatus(path: "/tftpboot", state: "failed", lastSuccessUSec: now - 300_000_000, lastAttemptUSec: now - 3_000_000,
                           message: "rsync: connection refused"),
        ]
        var s = ClusterStatus(heartbeat: .running(h), effector: .running(e), nowUSec: now)
        s.maxLagBytes = 1_048_576
        #expect(s.renderText() == """
            cluster kusu, node failover: standby, epoch 0
            peer installer: alive, role active, epoch 0, seen 0.0 s ago
            auto-failover: off, maintenance: off, tie-breaker: unreachable
            replication: NOT in sync: transactions acknowledged by the primary may be missing here
            automatic failover onto this node: refused: the local database is 2097152 bytes behind the peer (limit 1048576)
            file tree /srv/kusu/repos: synchronised 12 s ago
            file tree /tftpboot: FAILED 3.0 s ago: rsync: connection refused; copy from 5 min ago
            addresses: none held here
            database: standby, timeline 3, streaming, lag 2.0 MiB / 1.3 s, slot kusu_failover
            warning: the standby is 2.0 MiB behind, more than max_lag_bytes (1.0 MiB): an automatic failover onto it would be refused
            progress: pg_basebackup: 40 % copied
            units: none configured
            last operation: none

            """)
        let json = s.json()
        #expect(json["heartbeat"]?["failover_readiness"]?["ready"] == .bool(false))
        #expect(json["effector"]?["database"]?["lag_ms"] == .number(1250))
        #expect(json["effector"]?["progress"] == .string("pg_basebackup: 40 % copied"))
    }

    @Test func monitorAbsent() {
        #expect(standbyWithoutMonitor().renderText() == """
            cluster kusu, node failover
            heartbeat: kusu-hbd is not running
            addresses: none held here
            database: standby, timeline 1, not streaming, lag 0 B / 0.0 s
            units: kusu-ok.service inactive
            effector: busy
            last operation: StartUnits failed 10 min ago: kusu-fails.service: failed

            """)
    }

    @Test func nothingRunning() {
        let s = ClusterStatus(heartbeat: .unavailable("kusu-hbd is not running"),
                              effector: .unavailable("kusu-effectord is not running"), nowUSec: now)
        #expect(s.renderText() == "heartbeat: kusu-hbd is not running\neffector: kusu-effectord is not running\n")
    }

    @Test func peerNeverHeard() {
        var h = HeartbeatStatus()
        h.clusterName = "kusu"
        h.nodeName = "installer"
        h.role = "standby"
        h.peerName = "failover"
        h.links = [LinkStatus(name: "link0", peerAddress: "198.18.0.12", up: false, lastSeenUSec: 0)]
        let s = ClusterStatus(heartbeat: .running(h), effector: .unavailable("kusu-effectord is not running"), nowUSec: now)
        #expect(s.renderText() == """
            cluster kusu, node installer: standby, epoch 0
            peer failover: unknown, seen never
              link0 198.18.0.12: down, never seen
            auto-failover: off, maintenance: off, tie-breaker: unreachable
            effector: kusu-effectord is not running

            """)
    }

    static let ageCases: [(UInt64, String)] = [
        (0, "never"), (now, "0.0 s ago"), (now - 9_949_999, "9.9 s ago"), (now - 10_000_000, "10 s ago"),
        (now - 119_000_000, "119 s ago"), (now - 7_199_000_000, "119 min ago"), (now - 7_200_000_000, "2 h ago"),
        (now - 3 * 86_400_000_000, "3 d ago"), (now + 5_000_000, "0.0 s ago"),
    ]

    @Test(arguments: ageCases)
    func ages(stamp: UInt64, text: String) {
        #expect(age(stamp, now: now) == text)
    }

    static let byteCases: [(UInt64, String)] = [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
                      (5 * 1024 * 1024, "5.0 MiB"), (3 << 30, "3.0 GiB")]

    @Test(arguments: byteCases)
    func bytes(n: UInt64, text: String) {
        #expect(byteCount(n) == text)
    }
}

@Suite struct ResourceRendering {
    func status(role: String, readiness: (Bool, String)?) -> ClusterStatus {
        var s = activeStatus()
        guard var h = s.heartbeat.value else { return s }
        h.role = role
        h.serviceFaultReadiness = role == "active" ? readiness : nil
        h.serviceReady = role == "standby" ? readiness : nil
        h.peerServiceReady = true
        h.resources = [
            ResourceStatus(name: "database", kind: "database", state: "healthy"),
            ResourceStatus(
                name: "nginx.service", kind: "unit", state: "failed", failures: 3, lastFailureUSec: now - 2_000_000,
                detail: "nginx.service failed 3 times in 10 min (the last: nginx.service: it failed (exit-code))"),
            ResourceStatus(
                name: "kusu-dnsmasq.service", kind: "unit", state: "healthy", failures: 1,
                detail: "kusu-dnsmasq.service failed once in 10 min (the last: kusu-dnsmasq.service: systemd restarted it after a failure (signal))"),
            ResourceStatus(name: "repository", kind: "check", state: "unhealthy", failedOnPeer: true, detail: "repository: HTTP 503 from http://198.18.0.100/ (expected 200)"),
        ]
        s.heartbeat = .running(h)
        return s
    }

    func resourceLines(_ s: ClusterStatus) -> [String] {
        s.renderText().split(separator: "\n").map(String.init).filter { $0.hasPrefix("  ") && !$0.hasPrefix("  link") || $0.hasPrefix("resources") || $0.contains("a resource fails") || $0.contains("copy of the service") }
    }

    @Test func activeNodeHandingOver() {
        #expect(resourceLines(status(role: "active", readiness: (true, ""))) == [
            "resources:",
            "  database: healthy",
            "  nginx.service: FAILED here: nginx.service failed 3 times in 10 min (the last: nginx.service: it failed (exit-code)); handing over",
            "  kusu-dnsmasq.service: healthy (kusu-dnsmasq.service failed once in 10 min (the last: kusu-dnsmasq.service: systemd restarted it after a failure (signal)))",
            "  repository (check): UNHEALTHY: repository: HTTP 503 from http://198.18.0.100/ (expected 200); failed on the peer too",
            "handover if a resource fails here: ready",
        ])
    }

    @Test func activeNodeThatDoesNotHandOverSaysWhy() {
        let lines = resourceLines(status(role: "active", readiness: (false, "nginx.service failed on the peer too")))
        #expect(lines.contains("  nginx.service: FAILED here: nginx.service failed 3 times in 10 min (the last: nginx.service: it failed (exit-code)); not handing over: nginx.service failed on the peer too"))
        #expect(lines.last == "handover if a resource fails here: no: nginx.service failed on the peer too")
    }

    @Test func standbySaysWhetherItsCopyIsReady() {
        let lines = resourceLines(status(role: "standby", readiness: (false, "the database does not stream from the peer")))
        #expect(lines.contains { $0.hasPrefix("  nginx.service: FAILED here: ") && $0.hasSuffix("; the service will not come back here until the failures expire or `kusu-ha resource cleanup nginx.service`") })
        #expect(lines.last == "this node's copy of the service: NOT ready: the database does not stream from the peer")
    }

    @Test func jsonOfAResource() throws {
        let j = status(role: "active", readiness: (true, "")).json()
        let hb = try #require(j["heartbeat"])
        guard case .array(let resources)? = hb["resources"] else { Issue.record("resources is not an array"); return }
        #expect(resources.count == 4)
        #expect(resources[1].keys == ["name", "kind", "state", "failures", "last_failure_usec", "failed_on_peer", "detail"])
        #expect(hb["service_fault_readiness"]?.keys == ["ready", "reason"])
        #expect(hb["peer_service_ready"] == .bool(true))
    }

    @Test func resourcesFromProperties() {
        let h = HeartbeatStatus(properties: [
            "Resources": .array(element: "(sssutbs)", [
                .structure([.string("nginx.service"), .string("unit"), .string("failed"), .uint32(3), .uint64(5), .boolean(true), .string("why")]),
                .structure([.string("bad")]),  // malformed entries are skipped
            ]),
            "ServiceReady": .structure([.boolean(false), .string("not streaming")]),
            "PeerServiceReady": .boolean(true),
            "ServiceFaultReadiness": .structure([.boolean(true), .string("")]),
        ])
        #expect(h.resources == [ResourceStatus(name: "nginx.service", kind: "unit", state: "failed", failures: 3, lastFailureUSec: 5, failedOnPeer: true, detail: "why")])
        #expect(h.serviceReady?.ready == false && h.serviceReady?.reason == "not streaming")
        #expect(h.peerServiceReady == true)
        #expect(h.serviceFaultReadiness?.ready == true)
    }
}

@Suite struct JSONRendering {
    @Test func activeNodeGolden() {
        #expect(activeStatus().json().rendered() == """
            {
              "cluster": "kusu",
              "node": "installer",
              "now_usec": 1735689600000000,
              "heartbeat": {
                "running": true,
                "error": null,
                "role": "active",
                "epoch": 4,
                "auto_failover": true,
                "maintenance": false,
                "tie_breaker_reachable": true,
                "peer_tie_breaker_reachable": true,
                "packets_received": 1200,
                "packets_rejected": 3,
                "peer": {
                  "name": "failover",
                  "state": "alive",
                  "role": "standby",
                  "epoch": 4,
                  "last_seen_usec": 1735689599850000
                },
                "links": [
                  {
                    "name": "link0",
                    "address": "198.18.0.12",
                    "up": true,
                    "last_seen_usec": 1735689599850000
                  },
                  {
                    "name": "link1",
                    "address": "198.18.4.12",
                    "up": false,
                    "last_seen_usec": 1735689505000000
                  }
                ],
                "synchronous": "sync",
                "failover_readiness": null,
                "service_loss_readiness": {
                  "ready": true,
                  "reason": ""
                },
                "file_sync": [],
                "resources": [],
                "service_ready": null,
                "peer_service_ready": null,
                "service_fault_readiness": null
              },
              "effector": {
                "running": true,
                "error": null,
                "addresses": [
                  "198.18.0.100/24"
                ],
                "database": {
                  "role": "primary",
                  "timeline": 2,
                  "lag_bytes": 1536,
                  "lsn": 50331744,
                  "replication_state": "streaming",
                  "sync_state": "sync",
                  "synchronous_standby_names": "\\"failover\\"",
                  "lag_ms": 12,
                  "slot": "kusu_failover"
                },
                "progress": "",
                "units": [
                  {
                    "name": "kusu-ok.service",
                    "state": "active"
                  },
                  {
                    "name": "kusu-slow.service",
                    "state": "activating"
                  }
                ],
                "busy": false,
                "last_operation": {
                  "name": "Takeover",
                  "reason": "peer dead",
                  "finished_usec": 1735689597000000,
                  "success": true,
                  "error": ""
                }
              }
            }
            """)
    }

    /// The keys scripts rely on: changing them breaks users, so this list changes only deliberately.
    @Test func keysAreStable() throws {
        let j = activeStatus().json()
        #expect(j.keys == ["cluster", "node", "now_usec", "heartbeat", "effector"])
        let hb = try #require(j["heartbeat"])
        #expect(hb.keys == ["running", "error", "role", "epoch", "auto_failover", "maintenance", "tie_breaker_reachable",
                            "peer_tie_breaker_reachable", "packets_received", "packets_rejected", "peer", "links", "synchronous", "failover_readiness", "service_loss_readiness",
                            "file_sync", "resources", "service_ready", "peer_service_ready", "service_fault_readiness"])
        #expect(hb["peer"]?.keys == ["name", "state", "role", "epoch", "last_seen_usec"])
        guard case .array(let links)? = hb["links"] else { Issue.record("links is not an array"); return }
        #expect(links.first?.keys == ["name", "address", "up", "last_seen_usec"])
        let ef = try #require(j["effector"])
        #expect(ef.keys == ["running", "error", "addresses", "database", "progress", "units", "busy", "last_operation"])
        #expect(ef["database"]?.keys == ["role", "timeline", "lag_bytes", "lsn", "replication_state", "sync_state",
                                         "synchronous_standby_names", "lag_ms", "slot"])
        guard case .array(let units)? = ef["units"] else { Issue.record("units is not an array"); return }
        #expect(units.first?.keys == ["name", "state"])
        #expect(ef["last_operation"]?.keys == ["name", "reason", "finished_usec", "success", "error"])
    }

    @Test func absentServices() {
        let s = standbyWithoutMonitor().json()
        #expect(s["heartbeat"] == .object([("running", .bool(false)), ("error", .string("kusu-hbd is not running"))]))
        #expect(s["node"] == .string("failover"))
        let none = ClusterStatus(heartbeat: .unavailable("a"), effector: .unavailable("b"), nowUSec: 1)
        #expect(none.json()["cluster"] == JSON.null)
        #expect(none.json()["effector"]?.keys == ["running", "error"])
        var e = EffectorStatus()
        e.lastOperation = nil
        #expect(ClusterStatus(heartbeat: .unavailable("a"), effector: .running(e), nowUSec: 1)
            .json()["effector"]?["last_operation"] == JSON.null)
    }

    @Test func escaping() {
        #expect(JSON.string("a\"b\\c\n\u{1}é").rendered() == #""a\"b\\c\n\u0001é""#)
        #expect(JSON.array([]).rendered() == "[]")
        #expect(JSON.object([]).rendered() == "{}")
    }
}

@Suite struct PropertyDecoding {
    @Test func heartbeatGetAll() {
        let h = HeartbeatStatus(properties: [
            "ClusterName": .string("kusu"), "NodeName": .string("installer"), "Role": .string("standby"),
            "Epoch": .uint64(7), "AutoFailover": .boolean(true), "Maintenance": .boolean(true),
            "PeerName": .string("failover"), "PeerState": .string("dead"), "PeerRole": .string("active"),
            "PeerEpoch": .uint64(6), "PeerLastSeenUSec": .uint64(99),
            "Links": .array(element: "(ssbt)", [.structure([.string("link0"), .string("198.18.0.12"), .boolean(false), .uint64(98)])]),
            "TieBreakerReachable": .boolean(true), "PacketsReceived": .uint64(10), "PacketsRejected": .uint64(2),
            "PeerTieBreakerReachable": .boolean(false),
            "ServiceLossReadiness": .structure([.boolean(false), .string("this node is standby, not active")]),
        ])
        #expect(h.peerTieBreakerReachable == false)
        #expect(h.serviceLossReadiness?.ready == false && h.serviceLossReadiness?.reason == "this node is standby, not active")
        #expect(HeartbeatStatus(properties: [:]).peerTieBreakerReachable == nil)
        #expect(h.role == "standby" && h.epoch == 7 && h.autoFailover && h.maintenance)
        #expect(h.peerState == "dead" && h.peerRole == "active" && h.peerEpoch == 6 && h.peerLastSeenUSec == 99)
        #expect(h.links == [LinkStatus(name: "link0", peerAddress: "198.18.0.12", up: false, lastSeenUSec: 98)])
        #expect(h.packetsReceived == 10 && h.packetsRejected == 2 && h.tieBreakerReachable)
    }

    @Test func effectorGetAll() {
        let e = EffectorStatus(properties: [
            "Addresses": .strings(["198.18.0.100/24"]), "DatabaseRole": .string("standby"),
            "ReplicationLagBytes": .uint64(5), "DatabaseLSN": .uint64(6), "DatabaseTimeline": .uint32(3),
            "Units": .array(element: "(ss)", [.structure([.string("a.service"), .string("active")])]),
            "Busy": .boolean(true),
            "LastOperation": .structure([.string("Release"), .string("r"), .uint64(4), .boolean(true), .string("")]),
        ])
        #expect(e.addresses == ["198.18.0.100/24"] && e.databaseRole == "standby" && e.databaseTimeline == 3)
        #expect(e.replicationLagBytes == 5 && e.databaseLSN == 6 && e.busy)
        #expect(e.units == [UnitStatus(name: "a.service", state: "active")])
        #expect(e.lastOperation == OperationRecord(name: "Release", reason: "r", finishedUSec: 4, success: true, error: ""))
        // Before the first operation the effector reports an empty record: shown as none.
        let fresh = EffectorStatus(properties: [
            "LastOperation": .structure([.string(""), .string(""), .uint64(0), .boolean(false), .string("")]),
        ])
        #expect(fresh.lastOperation == nil)
    }
}
