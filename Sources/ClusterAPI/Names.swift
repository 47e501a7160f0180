// The wire names of kusu-ha's public contract (ARCHITECTURE.md), in one place.
//
// Every daemon, the client and the tests take bus names, object paths, member
// names and polkit action ids from here, so a typo cannot split the contract.

/// org.kusu.Heartbeat1, exported by kusu-hbd.
public enum Heartbeat1 {
    public static let busName = "org.kusu.Heartbeat1"
    public static let objectPath = "/org/kusu/Heartbeat1"
    public static let interface = "org.kusu.Heartbeat1"

    public enum Property {
        public static let clusterName = "ClusterName"
        public static let nodeName = "NodeName"
        public static let role = "Role"
        public static let epoch = "Epoch"
        public static let autoFailover = "AutoFailover"
        public static let maintenance = "Maintenance"
        public static let peerName = "PeerName"
        public static let peerState = "PeerState"
        public static let peerRole = "PeerRole"
        public static let peerEpoch = "PeerEpoch"
        public static let peerLastSeenUSec = "PeerLastSeenUSec"
        public static let links = "Links"
        public static let tieBreakerReachable = "TieBreakerReachable"
        public static let peerTieBreakerReachable = "PeerTieBreakerReachable"
        public static let synchronous = "Synchronous"
        public static let failoverReadiness = "FailoverReadiness"
        public static let serviceLossReadiness = "ServiceLossReadiness"
        public static let fileSync = "FileSync"
        public static let packetsReceived = "PacketsReceived"
        public static let packetsRejected = "PacketsRejected"
        public static let resources = "Resources"
        public static let serviceReady = "ServiceReady"
        public static let peerServiceReady = "PeerServiceReady"
        public static let serviceFaultReadiness = "ServiceFaultReadiness"
    }

    public enum Signal {
        public static let peerStateChanged = "PeerStateChanged"
        public static let roleChanged = "RoleChanged"
    }

    public enum Method {
        public static let switchover = "Switchover"
        public static let takeover = "Takeover"
        public static let setAutoFailover = "SetAutoFailover"
        public static let setMaintenance = "SetMaintenance"
        public static let preflight = "Preflight"
        public static let cleanupResource = "CleanupResource"
    }

    /// polkit action ids, one per mutating method.
    public enum Action {
        public static let switchover = "org.kusu.heartbeat1.switchover"
        public static let takeover = "org.kusu.heartbeat1.takeover"
        public static let setAutoFailover = "org.kusu.heartbeat1.set-auto-failover"
        public static let setMaintenance = "org.kusu.heartbeat1.set-maintenance"
        public static let cleanupResource = "org.kusu.heartbeat1.cleanup-resource"
    }
}

/// org.kusu.Effector1, exported by kusu-effectord.
public enum Effector1 {
    public static let busName = "org.kusu.Effector1"
    public static let objectPath = "/org/kusu/Effector1"
    public static let interface = "org.kusu.Effector1"

    public enum Method {
        public static let takeover = "Takeover"
        public static let takeoverAfterHandover = "TakeoverAfterHandover"
        public static let release = "Release"
        public static let addAddress = "AddAddress"
        public static let removeAddress = "RemoveAddress"
        public static let announceAddress = "AnnounceAddress"
        public static let probeAddress = "ProbeAddress"
        public static let promoteDatabase = "PromoteDatabase"
        public static let stopDatabase = "StopDatabase"
        public static let rejoinDatabase = "RejoinDatabase"
        public static let followDatabase = "FollowDatabase"
        public static let cloneDatabase = "CloneDatabase"
        public static let setSynchronousStandby = "SetSynchronousStandby"
        public static let waitForReplay = "WaitForReplay"
        public static let detachStandbys = "DetachStandbys"
        public static let killDatabase = "KillDatabase"
        public static let startUnits = "StartUnits"
        public static let stopUnits = "StopUnits"
    }

    public enum Property {
        public static let addresses = "Addresses"
        public static let databaseRole = "DatabaseRole"
        public static let replicationLagBytes = "ReplicationLagBytes"
        public static let databaseLSN = "DatabaseLSN"
        public static let databaseTimeline = "DatabaseTimeline"
        public static let units = "Units"
        public static let busy = "Busy"
        public static let lastOperation = "LastOperation"
        public static let replicationState = "ReplicationState"
        public static let syncState = "SyncState"
        public static let synchronousStandbyNames = "SynchronousStandbyNames"
        public static let replicationLagSeconds = "ReplicationLagSeconds"
        public static let replicationSlot = "ReplicationSlot"
        public static let progress = "Progress"
        public static let replicationLastReplyUSec = "ReplicationLastReplyUSec"
        public static let unitStates = "UnitStates"
        public static let databaseHealth = "DatabaseHealth"
    }

    /// Named errors (org.kusu.Effector1.Error.*).
    public enum Error {
        public static let notConfigured = "org.kusu.Effector1.Error.NotConfigured"
        public static let invalidArgument = "org.kusu.Effector1.Error.InvalidArgument"
        public static let busy = "org.kusu.Effector1.Error.Busy"
        public static let databaseNotStandby = "org.kusu.Effector1.Error.DatabaseNotStandby"
        public static let replicationLag = "org.kusu.Effector1.Error.ReplicationLag"
        public static let unitFailed = "org.kusu.Effector1.Error.UnitFailed"
        public static let netlinkFailed = "org.kusu.Effector1.Error.NetlinkFailed"
    }

    public enum Action {
        public static let takeover = "org.kusu.effector1.takeover"
        public static let manageAddress = "org.kusu.effector1.manage-address"
        public static let manageDatabase = "org.kusu.effector1.manage-database"
        public static let manageUnits = "org.kusu.effector1.manage-units"
    }
}

/// Installed locations that the programs default to.
public enum Paths {
    public static let configuration = "/etc/kusu-ha/kusu-ha.toml"
    /// systemd's StateDirectory=kusu-ha.
    public static let stateDirectory = "/var/lib/kusu-ha"
}
