// Files in directories another user owns, opened by root without following that user's links.
//
// The effector runs as root with CAP_DAC_OVERRIDE and works in the PostgreSQL data directory,
// which the database owner controls: it could replace postgresql.auto.conf with a link to
// /etc/shadow (and get a copy at the next rejoin), to /dev/zero (and exhaust memory), or a
// component of the path with a link elsewhere. So:
//   - a directory is reached component by component from "/" (openat, O_PATH); a symbolic
//     link on the way is followed only when the directory holding it belongs to root and no
//     one else may write to it (the administrator's own choice, e.g. /var/lib/postgresql
//     pointing to another disk), never in a directory another user may change;
//   - inside it, files are opened relative to the directory's descriptor with O_NOFOLLOW and
//     O_NONBLOCK (a FIFO does not block the open), must be regular files, and are read up to a
//     limit;
//   - files are written under a fresh name (O_CREAT | O_EXCL: no link followed), fchown'd and
//     fsync'd through their own descriptor, and renamed over the old name in the same directory
//     (a link under that name is replaced, not followed).
import Glibc

/// O_PATH (Linux; Glibc exports it only with _GNU_SOURCE): a descriptor that names a directory
/// for the *at calls without opening it for reading.
private let openPathFlag: Int32 = 0o10000000

struct FileError: Error {
    var message: String
}

func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// An open directory reached without following links another user controls.
final class SafeDirectory {
    let fd: Int32
    let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Opens the absolute `path`, component by component (see the file's comment).
    static func open(_ path: String) throws(FileError) -> SafeDirectory {
        guard path.hasPrefix("/") else { throw FileError(message: "\(path) is not an absolute path") }
        var fd = Glibc.open("/", openPathFlag | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(message: "cannot open /: \(errnoText())") }
        var walked = ""
        for component in path.split(separator: "/").map(String.init) {
            guard component != ".." else {
                close(fd)
                throw FileError(message: "\(path) contains \"..\"")
            }
            if component == "." { continue }
            var info = stat()
            var flags = openPathFlag | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW
            if fstatat(fd, component, &info, AT_SYMLINK_NOFOLLOW) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
                var holder = stat()
                guard fstat(fd, &holder) == 0, holder.st_uid == 0, holder.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
                    close(fd)
                    throw FileError(message: "\(walked)/\(component) is a symbolic link in a directory that uid \(holder.st_uid) or others may change: not followed")
                }
                flags &= ~O_NOFOLLOW   // root's own link: the kernel resolves it
            }
            let next = openat(fd, component, flags)
            let failure = errno
            close(fd)
            guard next >= 0 else {
                throw FileError(message: "cannot open \(walked)/\(component): \(failure == ELOOP ? "it became a symbolic link" : errnoText(failure))")
            }
            fd = next
            walked += "/" + component
        }
        return SafeDirectory(fd: fd, path: walked.isEmpty ? "/" : walked)
    }

    /// The directory's owner.
    func owner() throws(FileError) -> (uid: uid_t, gid: gid_t) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError(message: "cannot stat \(path): \(errnoText())") }
        return (info.st_uid, info.st_gid)
    }

    /// Does `name` exist here (as anything, a link included)?
    func contains(_ name: String) -> Bool {
        var info = stat()
        return fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// The regular file `name`, at most `limit` bytes; nil when it does not exist. A link, a
    /// device, a FIFO or a file over the limit is an error.
    func readRegularFile(_ name: String, limit: Int = 1 << 20) throws(FileError) -> String? {
        let file = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        if file < 0 {
            if errno == ENOENT { return nil }
            if errno == ELOOP { throw FileError(message: "\(path)/\(name) is a symbolic link: not read") }
            throw FileError(message: "cannot read \(path)/\(name): \(errnoText())")
        }
        defer { close(file) }
        var info = stat()
        guard fstat(file, &info) == 0 else { throw FileError(message: "cannot stat \(path)/\(name): \(errnoText())") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileError(message: "\(path)/\(name) is not a regular file: not read") }
        guard info.st_size <= limit else { throw FileError(message: "\(path)/\(name) is larger than \(limit) bytes: not read") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(file, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError(message: "cannot read \(path)/\(name): \(errnoText())")
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
            // It may grow while read: the limit holds anyway.
            guard bytes.count <= limit else { throw FileError(message: "\(path)/\(name) is larger than \(limit) bytes: not read") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `name` atomically (a fresh temporary file, fsync, rename), owned by uid:gid,
    /// mode 0600. A link under `name` is replaced, never followed.
    func writeOwnedFile(_ name: String, contents: String, uid: uid_t, gid: gid_t) throws(FileError) {
        let temporary = name + ".kusu-tmp"
        unlinkat(fd, temporary, 0)
        let file = openat(fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard file >= 0 else { throw FileError(message: "cannot create \(path)/\(temporary): \(errnoText())") }
        var failure: String?
        let bytes = Array(contents.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(file, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                failure = "cannot write \(path)/\(temporary): \(errnoText())"
                break
            }
            offset += written
        }
        if failure == nil, getuid() == 0 || geteuid() == 0, fchown(file, uid, gid) != 0 {
            failure = "cannot give \(path)/\(temporary) to uid \(uid): \(errnoText())"
        }
        if failure == nil, fchmod(file, 0o600) != 0 { failure = "cannot chmod \(path)/\(temporary): \(errnoText())" }
        if failure == nil, fsync(file) != 0 { failure = "cannot sync \(path)/\(temporary): \(errnoText())" }
        close(file)
        if failure == nil, renameat(fd, temporary, fd, name) != 0 { failure = "cannot replace \(path)/\(name): \(errnoText())" }
        if let failure {
            unlinkat(fd, temporary, 0)
            throw FileError(message: failure)
        }
    }

    /// Creates the directory `name` here (mode 0700) and gives it to uid:gid through its own
    /// descriptor (a link swapped in under that name is not followed).
    func makeOwnedDirectory(_ name: String, uid: uid_t, gid: gid_t) throws(FileError) {
        guard mkdirat(fd, name, 0o700) == 0 else { throw FileError(message: "cannot create \(path)/\(name): \(errnoText())") }
        guard getuid() == 0 || geteuid() == 0 else { return }
        let made = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard made >= 0 else { throw FileError(message: "cannot open \(path)/\(name): \(errnoText())") }
        defer { close(made) }
        guard fchown(made, uid, gid) == 0 else { throw FileError(message: "cannot give \(path)/\(name) to uid \(uid): \(errnoText())") }
    }
}

/// The parent directory and last component of an absolute path.
func splitPath(_ path: String) -> (directory: String, name: String) {
    let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    guard let name = parts.last else { return ("/", "") }
    return ("/" + parts.dropLast().joined(separator: "/"), name)
}
