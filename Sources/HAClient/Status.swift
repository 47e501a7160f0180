// The status model: what `kusu-ha status` shows, gathered with
// org.freedesktop.DBus.Properties.GetAll from both services.
public import DBusKit
import ClusterAPI

/// One heartbeat link as org.kusu.Heartbeat1.Links reports it (a(ssbt)).
public struct LinkStatus: Sendable, Equatable {
    public var name: String
    public var peerAddress: String
    public var up: Bool
    /// CLOCK_REALTIME µs of the last valid heartbeat on this link, 0 = never.
    public var lastSeenUSec: UInt64

    public init(name: String, peerAddress: String, up: Bool, lastSeenUSec: UInt64) {
        self.name = name
        self.peerAddress = peerAddress
        self.up = up
        self.lastSeenUSec = lastSeenUSec
    }
}

/// One `[[sync]]` tree as org.kusu.Heartbeat1.FileSync reports it (a(ssttts)).
public struct FileTreeStatus: Sendable, Equatable {
    public var path: String
    /// pending, synchronised, failed, paused, not-pulled, unknown.
    public var state: String
    /// CLOCK_REALTIME µs when the last successful pull began (the copy is at least that new); 0 = never.
    public var lastSuccessUSec: UInt64
    public var lastAttemptUSec: UInt64
    public var sinceUSec: UInt64
    /// The error, or why it is paused / unknown.
    public var message: String

    public init(path: String, state: String, lastSuccessUSec: UInt64 = 0, lastAttemptUSec: UInt64 = 0, sinceUSec: UInt64 = 0, message: String = "") {
        self.path = path
        self.state = state
        self.lastSuccessUSec = lastSuccessUSec
        self.lastAttemptUSec = lastAttemptUSec
        self.sinceUSec = sinceUSec
        self.message = message
    }
}

/// One resource as org.kusu.Heartbeat1.Resources reports it (a(sssutbs)).
public struct ResourceStatus: Sendable, Equatable {
    public var name: String
    /// database, unit, check.
    public var kind: String
    /// healthy, unhealthy, failed (given up here), idle, unknown.
    public var state: String
    /// Failures within [health] failure_timeout_s.
    public var failures: UInt32
    /// CLOCK_REALTIME µs of the last failure, 0 = none.
    public var lastFailureUSec: UInt64
    /// The peer gave it up too.
    public var failedOnPeer: Bool
    public var detail: String

    public init(
        name: String, kind: String, state: String, failures: UInt32 = 0, lastFailureUSec: UInt64 = 0, failedOnPeer: Bool = false,
        detail: String = ""
    ) {
        self.name = name
        self.kind = kind
        self.state = state
        self.failures = failures
        self.lastFailureUSec = lastFailureUSec
        self.failedOnPeer = failedOnPeer
        self.detail = detail
    }
}

/// The properties of org.kusu.Heartbeat1 (kusu-hbd).
public struct HeartbeatStatus: Sendable, Equatable {
    public var clusterName = ""
    public var nodeName = ""
    public var role = "unknown"
    public var epoch: UInt64 = 0
    public var autoFailover = false
    public var maintenance = false
    public var peerName = ""
    public var peerState = "unknown"
    public var peerRole = "unknown"
    public var peerEpoch: UInt64 = 0
    public var peerLastSeenUSec: UInt64 = 0
    public var links: [LinkStatus] = []
    public var tieBreakerReachable = false
    /// The peer reaches its tie-breakers, as it last said (nil: not published).
    public var peerTieBreakerReachable: Bool?
    public var packetsReceived: UInt64 = 0
    public var packetsRejected: UInt64 = 0
    /// What the primary's commits wait for (Heartbeat1.Synchronous); "" when not published.
    public var synchronous = ""
    /// Whether an automatic failover onto this node would go ahead now, and why not (nil: not published).
    public var failoverReadiness: (ready: Bool, reason: String)?
    /// On the active node: whether it would hand over if its service network were lost.
    public var serviceLossReadiness: (ready: Bool, reason: String)?
    /// The `[[sync]]` trees kept on the standby.
    public var fileSync: [FileTreeStatus] = []
    /// The health of every resource (units, database, checks).
    public var resources: [ResourceStatus] = []
    /// Whether this node's own copy of the service could serve (nil: not published).
    public var serviceReady: (ready: Bool, reason: String)?
    public var peerServiceReady: Bool?
    /// On the active node: whether it would hand over now for a failed resource.
    public var serviceFaultReadiness: (ready: Bool, reason: String)?

    public init() {}

    public static func == (a: HeartbeatStatus, b: HeartbeatStatus) -> Bool {
        a.clusterName == b.clusterName && a.nodeName == b.nodeName && a.role == b.role && a.epoch == b.epoch
            && a.autoFailover == b.autoFailover && a.maintenance == b.maintenance && a.peerName == b.peerName
            && a.peerState == b.peerState && a.peerRole == b.peerRole && a.peerEpoch == b.peerEpoch
            && a.peerLastSeenUSec == b.peerLastSeenUSec && a.links == b.links && a.tieBreakerReachable == b.tieBreakerReachable
            && a.peerTieBreakerReachable == b.peerTieBreakerReachable
            && a.packetsReceived == b.packetsReceived && a.packetsRejected == b.packetsRejected && a.synchronous == b.synchronous
            && a.failoverReadiness?.ready == b.failoverReadiness?.ready && a.failoverReadiness?.reason == b.failoverReadiness?.reason
            && a.serviceLossReadiness?.ready == b.serviceLossReadiness?.ready
            && a.serviceLossReadiness?.reason == b.serviceLossReadiness?.reason
            && a.fileSync == b.fileSync && a.resources == b.resources
            && a.serviceReady?.ready == b.serviceReady?.ready && a.serviceReady?.reason == b.serviceReady?.reason
            && a.peerServiceReady == b.peerServiceReady
            && a.serviceFaultReadiness?.ready == b.serviceFaultReadiness?.ready
            && a.serviceFaultReadiness?.reason == b.serviceFaultReadiness?.reason
    }

    /// From a GetAll reply; missing or mistyped properties keep their defaults.
    public init(properties p: [String: Value]) {
        typealias K = Heartbeat1.Property
        clusterName = p[K.clusterName]?.string ?? clusterName
        nodeName = p[K.nodeName]?.string ?? nodeName
        role = p[K.role]?.string ?? role
        epoch = p[K.epoch]?.uint64 ?? epoch
        autoFailover = p[K.autoFailover]?.bool ?? autoFailover
        maintenance = p[K.maintenance]?.bool ?? maintenance
        peerName = p[K.peerName]?.string ?? peerName
        peerState = p[K.peerState]?.string ?? peerState
        peerRole = p[K.peerRole]?.string ?? peerRole
        peerEpoch = p[K.peerEpoch]?.uint64 ?? peerEpoch
        peerLastSeenUSec = p[K.peerLastSeenUSec]?.uint64 ?? peerLastSeenUSec
        links = (p[K.links]?.array ?? []).compactMap { v in
            guard let f = v.structure, f.count == 4, let name = f[0].string, let address = f[1].string,
                  let up = f[2].bool, let seen = f[3].uint64 else { return nil }
            return LinkStatus(name: name, peerAddress: address, up: up, lastSeenUSec: seen)
        }
        tieBreakerReachable = p[K.tieBreakerReachable]?.bool ?? tieBreakerReachable
        peerTieBreakerReachable = p[K.peerTieBreakerReachable]?.bool ?? peerTieBreakerReachable
        packetsReceived = p[K.packetsReceived]?.uint64 ?? packetsReceived
        packetsRejected = p[K.packetsRejected]?.uint64 ?? packetsRejected
        synchronous = p[K.synchronous]?.string ?? synchronous
        if let f = p[K.failoverReadiness]?.structure, f.count == 2, let ready = f[0].bool, let reason = f[1].string {
            failoverReadiness = (ready, reason)
        }
        if let f = p[K.serviceLossReadiness]?.structure, f.count == 2, let ready = f[0].bool, let reason = f[1].string {
            serviceLossReadiness = (ready, reason)
        }
        resources = (p[K.resources]?.array ?? []).compactMap { v in
            guard let f = v.structure, f.count == 7, let name = f[0].string, let kind = f[1].string, let state = f[2].string,
                let failures = f[3].uint32, let last = f[4].uint64, let onPeer = f[5].bool, let detail = f[6].string
            else { return nil }
            return ResourceStatus(
                name: name, kind: kind, state: state, failures: failures, lastFailureUSec: last, failedOnPeer: onPeer, detail: detail)
        }
        if let f = p[K.serviceReady]?.structure, f.count == 2, let ready = f[0].bool, let reason = f[1].string {
            serviceReady = (ready, reason)
        }
        peerServiceReady = p[K.peerServiceReady]?.bool ?? peerServiceReady
        if let f = p[K.serviceFaultReadiness]?.structure, f.count == 2, let ready = f[0].bool, let reason = f[1].string {
            serviceFaultReadiness = (ready, reason)
        }
        fileSync = (p[K.fileSync]?.array ?? []).compactMap { v in
            guard let f = v.structure, f.count == 6, let path = f[0].string, let state = f[1].string, let success = f[2].uint64,
                let attempt = f[3].uint64, let since = f[4].uint64, let message = f[5].string
            else { return nil }
            return FileTreeStatus(path: path, state: state, lastSuccessUSec: success, lastAttemptUSec: attempt, sinceUSec: since, message: message)
        }
    }
}

/// org.kusu.Effector1.LastOperation ((sstbs)).
public struct OperationRecord: Sendable, Equatable {
    public var name: String
    public var reason: String
    /// CLOCK_REALTIME µs when it finished.
    public var finishedUSec: UInt64
    public var success: Bool
    public var error: String

    public init(name: String, reason: String, finishedUSec: UInt64, success: Bool, error: String) {
        self.name = name
        self.reason = reason
        self.finishedUSec = finishedUSec
        self.success = success
        self.error = error
    }

    init?(_ v: Value?) {
        guard let f = v?.structure, f.count == 5, let name = f[0].string, let reason = f[1].string,
              let finished = f[2].uint64, let success = f[3].bool, let error = f[4].string else { return nil }
        // The effector reports an empty name before its first operation.
        if name.isEmpty { return nil }
        self.init(name: name, reason: reason, finishedUSec: finished, success: success, error: error)
    }
}

/// One configured unit and its ActiveState.
public struct UnitStatus: Sendable, Equatable {
    public var name: String
    public var state: String

    public init(name: String, state: String) {
        self.name = name
        self.state = state
    }
}

/// The properties of org.kusu.Effector1 (kusu-effectord).
public struct EffectorStatus: Sendable, Equatable {
    public var addresses: [String] = []
    public var databaseRole = "unknown"
    public var replicationLagBytes: UInt64 = 0
    public var databaseLSN: UInt64 = 0
    public var databaseTimeline: UInt32 = 0
    public var units: [UnitStatus] = []
    public var busy = false
    public var lastOperation: OperationRecord?
    public var replicationState = ""
    public var syncState = ""
    public var synchronousStandbyNames = ""
    public var replicationLagSeconds: Double = 0
    public var replicationSlot = ""
    public var progress = ""

    public init() {}

    public init(properties p: [String: Value]) {
        typealias K = Effector1.Property
        addresses = (p[K.addresses]?.array ?? []).compactMap(\.string)
        databaseRole = p[K.databaseRole]?.string ?? databaseRole
        replicationLagBytes = p[K.replicationLagBytes]?.uint64 ?? replicationLagBytes
        databaseLSN = p[K.databaseLSN]?.uint64 ?? databaseLSN
        databaseTimeline = p[K.databaseTimeline]?.uint32 ?? databaseTimeline
        units = (p[K.units]?.array ?? []).compactMap { v in
            guard let f = v.structure, f.count == 2, let n = f[0].string, let s = f[1].string else { return nil }
            return UnitStatus(name: n, state: s)
        }
        busy = p[K.busy]?.bool ?? busy
        lastOperation = OperationRecord(p[K.lastOperation])
        replicationState = p[K.replicationState]?.string ?? replicationState
        syncState = p[K.syncState]?.string ?? syncState
        synchronousStandbyNames = p[K.synchronousStandbyNames]?.string ?? synchronousStandbyNames
        replicationLagSeconds = p[K.replicationLagSeconds]?.double ?? replicationLagSeconds
        replicationSlot = p[K.replicationSlot]?.string ?? replicationSlot
        progress = p[K.progress]?.string ?? progress
    }
}

/// A service's part of the status: its properties, or why they are missing.
public enum Part<T: Sendable & Equatable>: Sendable, Equatable {
    case running(T)
    /// The one-line explanation (e.g. "kusu-hbd is not running").
    case unavailable(String)

    public var value: T? { if case .running(let v) = self { v } else { nil } }
}

/// Everything `kusu-ha status` shows.
public struct ClusterStatus: Sendable, Equatable {
    public var heartbeat: Part<HeartbeatStatus>
    public var effector: Part<EffectorStatus>
    /// Names from the configuration file, if it was readable (used when kusu-hbd is absent).
    public var configuredCluster: String?
    public var configuredNode: String?
    /// CLOCK_REALTIME µs when it was gathered (for "seen 0.2 s ago").
    public var nowUSec: UInt64
    /// `[database] max_lag_bytes` from the configuration, for the lag warning (nil: unknown).
    public var maxLagBytes: UInt64?

    public init(heartbeat: Part<HeartbeatStatus>, effector: Part<EffectorStatus>,
                configuredCluster: String? = nil, configuredNode: String? = nil, nowUSec: UInt64) {
        self.heartbeat = heartbeat
        self.effector = effector
        self.configuredCluster = configuredCluster
        self.configuredNode = configuredNode
        self.nowUSec = nowUSec
    }

    /// The cluster name: kusu-hbd's, else the configuration's.
    public var clusterName: String? {
        if let h = heartbeat.value, !h.clusterName.isEmpty { return h.clusterName }
        return configuredCluster
    }

    public var nodeName: String? {
        if let h = heartbeat.value, !h.nodeName.isEmpty { return h.nodeName }
        return configuredNode
    }
}
