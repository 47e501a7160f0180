import Glibc

/// The user kusu-hbd runs as (sysusers.d), and who the daemons always serve first.
public enum MonitorUser {
    public static let name = "kusu-ha"
    /// Its uid on this machine, nil when the user does not exist.
    public static let uid: UInt32? = getpwnam(name).map { $0.pointee.pw_uid }

    /// A caller both daemons serve however many unprivileged calls are pending: root, or the
    /// monitor (calling the effector).
    public static func isPrivileged(_ caller: UInt32?) -> Bool {
        guard let caller else { return false }
        return caller == 0 || caller == uid
    }
}
