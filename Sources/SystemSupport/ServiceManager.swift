// The sd-daemon side of a service: readiness, status and socket activation.
import CSystemd
import Glibc

public enum ServiceManager {
    /// Tells systemd (Type=notify) a state change, e.g. "READY=1\nSTATUS=…". A no-op outside systemd.
    public static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// Sockets passed by socket activation (LISTEN_FDS), or [] when started directly.
    /// The environment variables are left in place (children do not inherit the fds: they are CLOEXEC).
    public static func listenedSockets() -> [Int32] {
        let count = sd_listen_fds(0)
        guard count > 0 else { return [] }
        return (0..<count).map { SD_LISTEN_FDS_START + $0 }
    }
}
