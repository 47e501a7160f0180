// Rendering of ClusterStatus: a compact text layout and JSON.

/// "0.2 s ago", "5 min ago", "never" — the age of a CLOCK_REALTIME µs stamp.
public func age(_ usec: UInt64, now: UInt64) -> String {
    if usec == 0 { return "never" }
    let d = now > usec ? now - usec : 0
    if d < 10_000_000 {
        let tenths = (d + 50_000) / 100_000
        return "\(tenths / 10).\(tenths % 10) s ago"
    }
    let s = d / 1_000_000
    if s < 120 { return "\(s) s ago" }
    if s < 7200 { return "\(s / 60) min ago" }
    if s < 172_800 { return "\(s / 3600) h ago" }
    return "\(s / 86400) d ago"
}

/// "0 B", "512 B", "1.5 KiB", "3.0 MiB".
public func byteCount(_ n: UInt64) -> String {
    if n < 1024 { return "\(n) B" }
    var unit = 0
    var scaled = n * 10 / 1024 // tenths
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
    while scaled >= 10240 && unit < units.count - 1 {
        scaled /= 1024
        unit += 1
    }
    return "\(scaled / 10).\(scaled % 10) \(units[unit])"
}

private func onOff(_ b: Bool) -> String { b ? "on" : "off" }

extension ClusterStatus {
    /// The text layout of `kusu-ha status`, one fact per line, ending with "\n".
    ///
    ///     cluster kusu, node installer: active, epoch 4
    ///     peer failover: alive, role standby, epoch 4, seen 0.1 s ago
    ///       link0 198.18.0.12: up, seen 0.1 s ago
    ///     auto-failover: on, maintenance: off, tie-breaker: reachable
    ///     addresses: 198.18.0.100/24
    ///     database: primary, timeline 2, lag 0 B
    ///     units: kusu-ok.service active, kusu-slow.service active
    ///     last operation: Takeover (peer dead) succeeded 3 s ago
    public func renderText() -> String {
        var lines: [String] = []
        var head = [clusterName.map { "cluster \($0)" }, nodeName.map { "node \($0)" }].compactMap { $0 }
            .joined(separator: ", ")
        switch heartbeat {
        case .running(let h):
            head += (head.isEmpty ? "" : ": ") + "\(h.role), epoch \(h.epoch)"
            lines.append(head)
            var peer = "peer \(h.peerName.isEmpty ? "?" : h.peerName): \(h.peerState)"
            if h.peerRole != "unknown" { peer += ", role \(h.peerRole), epoch \(h.peerEpoch)" }
            peer += ", seen \(age(h.peerLastSeenUSec, now: nowUSec))"
            lines.append(peer)
            for l in h.links {
                let seen = l.lastSeenUSec == 0 ? "never seen" : "seen \(age(l.lastSeenUSec, now: nowUSec))"
                lines.append("  \(l.name) \(l.peerAddress): \(l.up ? "up" : "down"), \(seen)")
            }
            lines.append("auto-failover: \(onOff(h.autoFailover)), maintenance: \(onOff(h.maintenance)), "
                + "tie-breaker: \(h.tieBreakerReachable ? "reachable" : "unreachable")"
                + (h.peerTieBreakerReachable.map { " (peer: \($0 ? "reachable" : "unreachable"))" } ?? ""))
            if let text = Self.synchronousText(h.synchronous, role: h.role) { lines.append("replication: \(text)") }
            if h.role == "standby", let readiness = h.failoverReadiness {
                lines.append("automatic failover onto this node: " + (readiness.ready ? "ready" : "refused: \(readiness.reason)"))
            }
            if h.role == "active", let readiness = h.serviceLossReadiness {
                lines.append("handover if this node loses its service network: " + (readiness.ready ? "ready" : "no: \(readiness.reason)"))
            }
            for tree in h.fileSync { lines.append("file tree \(tree.path): \(Self.describe(tree, now: nowUSec))") }
            if !h.resources.isEmpty {
                lines.append("resources:")
                for resource in h.resources { lines.append("  " + Self.describe(resource, status: h)) }
            }
            if h.role == "active", let readiness = h.serviceFaultReadiness {
                lines.append("handover if a resource fails here: " + (readiness.ready ? "ready" : "no: \(readiness.reason)"))
            }
            if h.role == "standby", let readiness = h.serviceReady {
                lines.append("this node's copy of the service: " + (readiness.ready ? "ready" : "NOT ready: \(readiness.reason)"))
            }
        case .unavailable(let why):
            if !head.isEmpty { lines.append(head) }
            lines.append("heartbeat: \(why)")
        }
        switch effector {
        case .running(let e):
            lines.append("addresses: " + (e.addresses.isEmpty ? "none held here" : e.addresses.joined(separator: ", ")))
            var db = "database: \(e.databaseRole)"
            if e.databaseRole == "primary" || e.databaseRole == "standby" {
                db += ", timeline \(e.databaseTimeline)"
                if e.databaseRole == "primary" {
                    db += e.replicationState.isEmpty ? ", no standby connected"
                        : ", standby \(e.replicationState)" + (e.syncState.isEmpty ? "" : " (\(e.syncState))")
                } else {
                    db += e.replicationState.isEmpty ? ", not streaming" : ", \(e.replicationState)"
                }
                db += ", lag \(byteCount(e.replicationLagBytes)) / \(Self.seconds(e.replicationLagSeconds))"
                if !e.replicationSlot.isEmpty { db += ", slot \(e.replicationSlot)" }
            }
            lines.append(db)
            if let limit = maxLagBytes, e.replicationLagBytes > limit, e.databaseRole == "primary" || e.databaseRole == "standby" {
                lines.append("warning: the standby is \(byteCount(e.replicationLagBytes)) behind, more than max_lag_bytes "
                    + "(\(byteCount(limit))): an automatic failover onto it would be refused")
            }
            if !e.progress.isEmpty { lines.append("progress: \(e.progress)") }
            lines.append("units: " + (e.units.isEmpty ? "none configured"
                : e.units.map { "\($0.name) \($0.state)" }.joined(separator: ", ")))
            if e.busy { lines.append("effector: busy") }
            if let op = e.lastOperation {
                var text = "last operation: \(op.name)"
                if !op.reason.isEmpty && op.reason != op.name { text += " (\(op.reason))" }
                text += op.success ? " succeeded" : " failed"
                text += " \(age(op.finishedUSec, now: nowUSec))"
                if !op.success && !op.error.isEmpty { text += ": \(op.error)" }
                lines.append(text)
            } else {
                lines.append("last operation: none")
            }
        case .unavailable(let why):
            lines.append("effector: \(why)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A file tree's state in words: "synchronised 12 s ago", "failed 3.0 s ago: ERROR; copy from 2 min ago",
    /// "paused: REASON; copy from 1 h ago", "unknown: REASON".
    static func describe(_ tree: FileTreeStatus, now: UInt64) -> String {
        let copy = tree.lastSuccessUSec == 0 ? "never synchronised" : "copy from \(age(tree.lastSuccessUSec, now: now))"
        switch tree.state {
        case "synchronised": return "synchronised \(age(tree.lastSuccessUSec, now: now))"
        case "failed": return "FAILED \(age(tree.lastAttemptUSec, now: now)): \(tree.message); \(copy)"
        case "paused": return "paused: \(tree.message)" + (tree.lastSuccessUSec == 0 ? "" : "; \(copy)")
        case "pending": return tree.lastSuccessUSec == 0 ? "not synchronised yet" : "pulling again; \(copy)"
        case "not-pulled": return "not pulled here (pull = false)"
        default: return "\(tree.state): \(tree.message)"
        }
    }

    /// A resource in words, e.g. "nginx.service: FAILED here: nginx.service failed 3 times in 10 min
    /// (...); handing over", "database: healthy", "repository (check): unhealthy: repository: HTTP 503".
    static func describe(_ resource: ResourceStatus, status h: HeartbeatStatus) -> String {
        let name = resource.kind == "check" ? "\(resource.name) (check)" : resource.name
        var text: String
        switch resource.state {
        case "failed":
            text = "\(name): FAILED here: \(resource.detail)"
            if h.role == "active", let readiness = h.serviceFaultReadiness {
                text += readiness.ready ? "; handing over" : "; not handing over: \(readiness.reason)"
            } else if h.role == "standby" {
                text += "; the service will not come back here until the failures expire or `kusu-ha resource cleanup \(resource.name)`"
            }
        case "unhealthy": text = "\(name): UNHEALTHY: \(resource.detail)"
        case "healthy": text = "\(name): healthy" + (resource.detail.isEmpty ? "" : " (\(resource.detail))")
        case "idle": text = "\(name): not running here" + (resource.detail.isEmpty ? "" : " (\(resource.detail))")
        default: text = "\(name): \(resource.state)" + (resource.detail.isEmpty ? "" : ": \(resource.detail)")
        }
        if resource.failedOnPeer { text += "; failed on the peer too" }
        return text
    }

    /// "0.0 s", "1.5 s".
    static func seconds(_ value: Double) -> String {
        let tenths = Int((max(0, value) * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) s"
    }

    /// The Heartbeat1.Synchronous value in words (nil: nothing to say).
    static func synchronousText(_ value: String, role: String) -> String? {
        switch (value, role) {
        case ("", _), ("off", _), ("unknown", _): return nil
        case ("sync", "standby"): return "in sync: this standby has every acknowledged transaction"
        case ("async", "standby"): return "NOT in sync: transactions acknowledged by the primary may be missing here"
        case ("sync", _): return "synchronous: commits wait for the standby"
        case ("async", _): return "degraded: the standby streams but commits do not wait for it (it has not caught up yet)"
        case ("none", _): return "degraded: no standby connected, commits do not wait"
        case ("waiting", _): return "strict: commits WAIT for a standby that is not connected"
        default: return value
        }
    }

    /// The JSON document of `kusu-ha status --json`. Stable keys (a test pins them):
    ///
    ///     cluster            string|null  cluster name (kusu-hbd's, else the configuration's)
    ///     node               string|null  this node's name (likewise)
    ///     now_usec           number       CLOCK_REALTIME µs when gathered
    ///     heartbeat          object       kusu-hbd (org.kusu.Heartbeat1):
    ///       running            bool
    ///       error              string|null  why it is not available (then nothing else follows)
    ///       role, epoch, auto_failover, maintenance, tie_breaker_reachable,
    ///       packets_received, packets_rejected
    ///       peer               {name, state, role, epoch, last_seen_usec}
    ///       links              [{name, address, up, last_seen_usec}]
    ///       synchronous        string   sync, async, none, waiting, off, unknown
    ///       failover_readiness {ready, reason} | null
    ///       service_loss_readiness {ready, reason} | null
    ///       file_sync          [{path, state, last_success_usec, last_attempt_usec, since_usec, message}]
    ///       resources          [{name, kind, state, failures, last_failure_usec, failed_on_peer, detail}]
    ///       service_ready      {ready, reason} | null
    ///       peer_service_ready bool|null
    ///       service_fault_readiness {ready, reason} | null
    ///     effector           object       kusu-effectord (org.kusu.Effector1):
    ///       running            bool
    ///       error              string|null
    ///       addresses          [string]     floating addresses held here (address/prefix)
    ///       database           {role, timeline, lag_bytes, lsn, replication_state, sync_state,
    ///                           synchronous_standby_names, lag_ms, slot}
    ///       progress           string       what a clone/rejoin is doing ("" otherwise)
    ///       units              [{name, state}]
    ///       busy               bool
    ///       last_operation     {name, reason, finished_usec, success, error} | null
    ///
    /// µs timestamps are CLOCK_REALTIME, 0 = never.
    public func json() -> JSON {
        var hb: [(String, JSON)]
        switch heartbeat {
        case .running(let h):
            hb = [
                ("running", .bool(true)), ("error", .null),
                ("role", .string(h.role)), ("epoch", .number(h.epoch)),
                ("auto_failover", .bool(h.autoFailover)), ("maintenance", .bool(h.maintenance)),
                ("tie_breaker_reachable", .bool(h.tieBreakerReachable)),
                ("peer_tie_breaker_reachable", h.peerTieBreakerReachable.map { .bool($0) } ?? .null),
                ("packets_received", .number(h.packetsReceived)), ("packets_rejected", .number(h.packetsRejected)),
                ("peer", .object([
                    ("name", .string(h.peerName)), ("state", .string(h.peerState)), ("role", .string(h.peerRole)),
                    ("epoch", .number(h.peerEpoch)), ("last_seen_usec", .number(h.peerLastSeenUSec)),
                ])),
                ("links", .array(h.links.map { l in .object([
                    ("name", .string(l.name)), ("address", .string(l.peerAddress)),
                    ("up", .bool(l.up)), ("last_seen_usec", .number(l.lastSeenUSec)),
                ]) })),
                ("synchronous", .string(h.synchronous)),
                ("failover_readiness", h.failoverReadiness.map { .object([("ready", .bool($0.ready)), ("reason", .string($0.reason))]) } ?? .null),
                ("service_loss_readiness", h.serviceLossReadiness.map { .object([("ready", .bool($0.ready)), ("reason", .string($0.reason))]) } ?? .null),
                ("file_sync", .array(h.fileSync.map { t in .object([
                    ("path", .string(t.path)), ("state", .string(t.state)), ("last_success_usec", .number(t.lastSuccessUSec)),
                    ("last_attempt_usec", .number(t.lastAttemptUSec)), ("since_usec", .number(t.sinceUSec)), ("message", .string(t.message)),
                ]) })),
                ("resources", .array(h.resources.map { r in .object([
                    ("name", .string(r.name)), ("kind", .string(r.kind)), ("state", .string(r.state)),
                    ("failures", .number(UInt64(r.failures))), ("last_failure_usec", .number(r.lastFailureUSec)),
                    ("failed_on_peer", .bool(r.failedOnPeer)), ("detail", .string(r.detail)),
                ]) })),
                ("service_ready", h.serviceReady.map { .object([("ready", .bool($0.ready)), ("reason", .string($0.reason))]) } ?? .null),
                ("peer_service_ready", h.peerServiceReady.map { .bool($0) } ?? .null),
                ("service_fault_readiness", h.serviceFaultReadiness.map { .object([("ready", .bool($0.ready)), ("reason", .string($0.reason))]) } ?? .null),
            ]
        case .unavailable(let why):
            hb = [("running", .bool(false)), ("error", .string(why))]
        }
        var ef: [(String, JSON)]
        switch effector {
        case .running(let e):
            ef = [
                ("running", .bool(true)), ("error", .null),
                ("addresses", .array(e.addresses.map { .string($0) })),
                ("database", .object([
                    ("role", .string(e.databaseRole)), ("timeline", .number(UInt64(e.databaseTimeline))),
                    ("lag_bytes", .number(e.replicationLagBytes)), ("lsn", .number(e.databaseLSN)),
                    ("replication_state", .string(e.replicationState)), ("sync_state", .string(e.syncState)),
                    ("synchronous_standby_names", .string(e.synchronousStandbyNames)),
                    ("lag_ms", .number(UInt64((max(0, e.replicationLagSeconds) * 1000).rounded()))), ("slot", .string(e.replicationSlot)),
                ])),
                ("progress", .string(e.progress)),
                ("units", .array(e.units.map { .object([("name", .string($0.name)), ("state", .string($0.state))]) })),
                ("busy", .bool(e.busy)),
                ("last_operation", e.lastOperation.map { op in .object([
                    ("name", .string(op.name)), ("reason", .string(op.reason)),
                    ("finished_usec", .number(op.finishedUSec)), ("success", .bool(op.success)),
                    ("error", .string(op.error)),
                ]) } ?? .null),
            ]
        case .unavailable(let why):
            ef = [("running", .bool(false)), ("error", .string(why))]
        }
        return .object([
            ("cluster", clusterName.map { .string($0) } ?? .null),
            ("node", nodeName.map { .string($0) } ?? .null),
            ("now_usec", .number(nowUSec)),
            ("heartbeat", .object(hb)),
            ("effector", .object(ef)),
        ])
    }
}
