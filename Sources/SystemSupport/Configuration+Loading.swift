// Loading the configuration and the heartbeat key from disk.
public import ClusterCore

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
            throw ConfigError(file: path, line: nil, message: "the heartbeat key file is empty; generate one with: head -c 32 /dev/urandom > \(path)")
        }
        guard let key = HeartbeatKey(bytes) else {
            throw ConfigError(file: path, line: nil, message: "the heartbeat key is \(bytes.count) bytes long; at least \(HeartbeatKey.minimumLength) are required")
        }
        return key
    }
}
