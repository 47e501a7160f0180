// Loading the configuration and the heartbeat key from disk.
public import ClusterCore
import Glibc

extension Configuration {
    /// Reads and validates the TOML file at `path`; every error names the file.
    public static func load(path: String) throws(ConfigError) -> Configuration {
        let bytes: [UInt8]
        do {
            bytes = try Files.read(path)
        } catch {
            throw ConfigError(file: path, line: nil, message: "cannot read the configuration: \(error.reason)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, line: nil, message: "the file is not valid UTF-8")
        }
        return try parse(text, file: path, hostName: Files.hostName())
    }

    /// Reads `cluster.auth_key_file`. The key is the file's bytes, as they are (like corosync's authkey).
    public func loadHeartbeatKey() throws(ConfigError) -> HeartbeatKey {
        let path = cluster.authKeyFile
        let bytes: [UInt8]
        do {
            bytes = try Files.read(path, limit: 4096)
        } catch {
            throw ConfigError(file: path, line: nil, message: "cannot read the heartbeat key (cluster.auth_key_file): \(error.reason)")
        }
        guard !bytes.isEmpty else {
            throw ConfigError(file: path, line: nil, message: "the heartbeat key file is empty; generate one with: (umask 077 && head -c 32 /dev/urandom > \(path))")
        }
        guard let key = HeartbeatKey(bytes) else {
            throw ConfigError(file: path, line: nil, message: "the heartbeat key is \(bytes.count) bytes long; at least \(HeartbeatKey.minimumLength) are required")
        }
        // Whoever reads the key can speak for the peer: it must belong to root, kusu-ha or the
        // user reading it, be readable by its group at most (root:kusu-ha 0440), never by others.
        var info = stat()
        if stat(path, &info) == 0 {
            let mode = info.st_mode & 0o7777
            let octal = String(mode, radix: 8)
            if mode & 0o007 != 0 {
                throw ConfigError(
                    file: path, line: nil,
                    message: "the heartbeat key file is open to others (mode 0\(octal)): anyone on this machine could forge heartbeats; run chmod 0400 \(path)")
            }
            if mode & 0o020 != 0 {
                throw ConfigError(
                    file: path, line: nil, message: "the heartbeat key file is writable by its group (mode 0\(octal)); run chmod 0400 \(path)")
            }
            if info.st_uid != 0 && info.st_uid != geteuid() && info.st_uid != MonitorUser.uid {
                throw ConfigError(
                    file: path, line: nil,
                    message: "the heartbeat key file belongs to uid \(info.st_uid), neither root, kusu-ha nor this user (uid \(geteuid())); run chown kusu-ha:kusu-ha \(path)")
            }
        }
        return key
    }
}
