// Reading and writing the status file (the only I/O of this module).
import Glibc
public import SystemSupport

extension FileSyncStatus {
    /// The largest status file read (a few hundred bytes per tree).
    public static let maximumFileSize = 1 << 20

    /// Reads and parses the status file at `path` (default /run/kusu-ha-sync/status).
    ///
    /// A missing file gives an error with `missing` set (the puller has not run since boot);
    /// an unreadable, oversized, non-UTF-8 or malformed file gives an error naming the file,
    /// the line where known, and what is wrong. Never traps, whatever the contents.
    public static func read(path: String = FileSyncPaths.statusFile) throws(FileSyncStatusError) -> FileSyncStatus {
        let bytes: [UInt8]
        do {
            bytes = try Files.read(path, limit: maximumFileSize)
        } catch {
            throw FileSyncStatusError(file: path, line: nil, reason: error.reason, missing: error.code == ENOENT)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw FileSyncStatusError(file: path, line: nil, reason: "the file is not valid UTF-8")
        }
        return try FileSyncStatus(decoding: text, file: path)
    }

    /// Replaces the file at `path` atomically (temporary file, fsync, rename), mode 0644:
    /// kusu-hbd reads it as user kusu-ha. It holds no secret.
    public func write(path: String = FileSyncPaths.statusFile) throws(FileError) {
        try Files.replace(path, with: Array(encoded.utf8), mode: 0o644)
        // Whatever the umask, and whatever mode an earlier file had.
        _ = chmod(path, 0o644)
    }
}
