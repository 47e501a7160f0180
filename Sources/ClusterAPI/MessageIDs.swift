/// The journal MESSAGE_IDs of the events an administrator needs to understand; each is
/// explained in systemd/kusu-ha.catalog (installed to /usr/lib/systemd/catalog), so
/// `journalctl -x` shows what happened and what to do. Log them as metadata "message.id".
public enum MessageID {
    /// kusu-hbd: this node's role changed (standby → taking-over → active, releasing, failed).
    public static let roleChanged = "1ed6f22120fd46658059113022fe4ae8"
    /// kusu-hbd: the peer's state changed (alive, late, dead).
    public static let peerState = "2c2408dc4cc8440f894a84e4585119fb"
    /// kusu-hbd: the peer is dead but the automatic failover was refused (the reason is given).
    public static let failoverRefused = "df67ffc9ea8c40459ee446ec9c53f294"
    /// kusu-hbd: the fencing command succeeded before a takeover.
    public static let fenced = "7fbc62311f704fe691ff0e61ce3adedd"
    /// kusu-hbd: the fencing command failed; no takeover.
    public static let fencingFailed = "658ccfe927aa4b2bb499ac79401f21cd"
    /// kusu-hbd: two active nodes heard each other; this one yields.
    public static let yielding = "5f9bd839eeae43f5b843688e228ca73d"
    /// kusu-hbd or kusu-effectord: a D-Bus call was refused by polkit.
    public static let denied = "569d123074104d9db469774ef1cf06a7"
    /// kusu-hbd: the primary no longer waits for the standby (degraded replication).
    public static let replicationDegraded = "5f9305cd4c8c4409bbee013945a661e4"
    /// kusu-hbd: the primary waits for the standby again (synchronous).
    public static let replicationSynchronous = "13e1c673166d47cfa735d80190aefaa2"
    /// kusu-hbd: this node hands the active role over (switchover).
    public static let switchover = "1f63e5d8335042c19d5fb7399f857ed9"
    /// kusu-hbd: this active node lost its service network and hands over to the standby.
    public static let serviceLost = "751fb4573635400eadb621cb81334a6f"
    /// kusu-hbd: the standby took over without the final LSN of a handover (the peer waited for it on every commit).
    public static let handoverWithoutFinalLSN = "8fa8d008312042cc8438bf73ee7fd62e"
    /// kusu-hbd: a switchover failed.
    public static let switchoverFailed = "e6ef6e1b5f3a460e9676128132ea6f6c"
    /// kusu-hbd: a resource failed on this node (a unit restarted or failed, the database stopped
    /// answering, a check failed); the failure is counted.
    public static let resourceFailed = "5e4ddd84d63a476a81cbf88a15589c50"
    /// kusu-hbd: this node gave a resource up (its failures reached the threshold).
    public static let resourceGivenUp = "6de34d44670a46ec9f8a96d409131a28"
    /// kusu-hbd: a resource is healthy again.
    public static let resourceRecovered = "5f3b9ee81a094a168581575acc3e7be6"
    /// kusu-hbd: this active node hands over because a resource failed here.
    public static let serviceFaultHandover = "fd68f4141d8748ae922a9f88439b0af7"
    /// kusu-hbd: a resource failed here, but the node does not hand over (the reason is given).
    public static let serviceFaultRefused = "62b238f4d7e14808bb375a957be1bf81"
    /// kusu-hbd: an operator cleaned up a resource's failures.
    public static let resourceCleanup = "5819fa11c75b442e93f8337b8faeec0b"
    /// kusu-effectord: Takeover finished: this node serves the floating addresses.
    public static let takeoverDone = "a30b36cf91914594af3fd936fdd4ee1b"
    /// kusu-effectord: Release finished: this node no longer serves them.
    public static let releaseDone = "7fe49de4b83043e1a1ccc92d5b6a7cac"
    /// kusu-effectord: an operation failed.
    public static let operationFailed = "f6adcac51f7e47e48e178b3efe49957b"
    /// kusu-effectord: the local database was promoted to primary.
    public static let databasePromoted = "2f63ff1917464b4e8a528b9f048550c5"
    /// kusu-effectord: the local database was made a standby of the peer (clone/rejoin).
    public static let standbyBuilt = "fe3ed7e4168848e7accce9cba7df0891"
}
