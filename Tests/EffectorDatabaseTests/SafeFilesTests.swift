import Foundation
import Glibc
import Testing

@testable import Effector

/// The attacks of a database owner on root's file work in the data directory (issue: root
/// follows links in a directory another user owns). Each builds the attack in a directory owned
/// by `nobody`, runs the effector's code as root, and asserts that nothing was followed.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root (chown to nobody)"))
struct SafeFilesTests {
    let nobody: (uid: uid_t, gid: gid_t) = {
        guard let entry = getpwnam("nobody") else { return (65534, 65534) }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }()

    /// A fresh root-owned 0755 directory with `data` inside it owned by nobody; removed after.
    func withTree(_ body: (_ base: String, _ data: String) throws -> Void) throws {
        var template = Array((NSTemporaryDirectory() + "/kusu-safefiles.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw FileError(message: "mkdtemp: \(errnoText())") }
        let base = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base, 0o755)
        let data = base + "/data"
        mkdir(data, 0o700)
        chown(data, nobody.uid, nobody.gid)
        try body(base, data)
    }

    func write(_ path: String, _ text: String) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    @Test func aLinkToASecretIsNotRead() throws {
        try withTree { base, data in
            try write(base + "/secret", "root's secret")
            chmod(base + "/secret", 0o600)
            symlink(base + "/secret", data + "/postgresql.auto.conf")
            let directory = try SafeDirectory.open(data)
            #expect(throws: FileError.self) { try directory.readRegularFile("postgresql.auto.conf") }
            do {
                _ = try directory.readRegularFile("postgresql.auto.conf")
            } catch let error as FileError {
                #expect(error.message.contains("is a symbolic link: not read"))
            }
        }
    }

    @Test func devicesFifosAndHugeFilesAreNotRead() throws {
        try withTree { _, data in
            symlink("/dev/zero", data + "/zero")
            mkfifo(data + "/fifo", 0o600)
            let big = String(repeating: "x", count: 2 << 20)
            try write(data + "/big", big)
            try write(data + "/small", "port = 5432\n")
            let directory = try SafeDirectory.open(data)
            #expect(throws: FileError.self) { try directory.readRegularFile("zero") }
            // O_NONBLOCK: the open of a FIFO with no writer returns at once and is refused.
            #expect(throws: FileError.self) { try directory.readRegularFile("fifo") }
            #expect(throws: FileError.self) { try directory.readRegularFile("big") }
            #expect(try directory.readRegularFile("small") == "port = 5432\n")
            #expect(try directory.readRegularFile("missing") == nil)
        }
    }

    @Test func aLinkInAnotherUsersDirectoryIsNotFollowedOnTheWay() throws {
        try withTree { base, data in
            mkdir(base + "/elsewhere", 0o755)
            try write(base + "/elsewhere/postgresql.auto.conf", "elsewhere")
            // The owner of data replaces a subdirectory with a link.
            symlink(base + "/elsewhere", data + "/sub")
            #expect(throws: FileError.self) { try SafeDirectory.open(data + "/sub") }
            // Root's own link, in a root-owned directory no one else may write: followed.
            symlink(base + "/elsewhere", base + "/rootlink")
            let followed = try SafeDirectory.open(base + "/rootlink")
            #expect(try followed.readRegularFile("postgresql.auto.conf") == "elsewhere")
        }
    }

    @Test func writingOverALinkReplacesTheLinkNotItsTarget() throws {
        try withTree { base, data in
            try write(base + "/target", "untouched")
            symlink(base + "/target", data + "/standby.signal")
            let directory = try SafeDirectory.open(data)
            try directory.writeOwnedFile("standby.signal", contents: "", uid: nobody.uid, gid: nobody.gid)
            #expect(try String(contentsOfFile: base + "/target", encoding: .utf8) == "untouched")
            var info = stat()
            #expect(lstat(data + "/standby.signal", &info) == 0)
            #expect((info.st_mode & S_IFMT) == S_IFREG)
            #expect(info.st_uid == nobody.uid)
            #expect(info.st_mode & 0o777 == 0o600)
        }
    }

    /// The attack end to end: a rejoin (prepareStandby) in a data directory whose
    /// postgresql.auto.conf links to a secret must fail and leave no copy of it.
    @Test func aRejoinRefusesALinkedAutoConf() throws {
        try withTree { base, data in
            try write(base + "/secret", "root's secret")
            chmod(base + "/secret", 0o600)
            symlink(base + "/secret", data + "/postgresql.auto.conf")
            #expect(throws: DatabaseError.self) {
                try StandbySetup.prepareStandby(
                    dataDirectory: data, primaryConninfo: "host=198.18.0.1", applicationName: "node-b", rewind: false)
            }
            var info = stat()
            #expect(lstat(data + "/postgresql.auto.conf", &info) == 0)
            #expect((info.st_mode & S_IFMT) == S_IFLNK)   // still the link: nothing was written in its place
            let copies = try FileManager.default.contentsOfDirectory(atPath: data)
            for name in copies where name != "postgresql.auto.conf" {
                let text = (try? String(contentsOfFile: data + "/" + name, encoding: .utf8)) ?? ""
                #expect(!text.contains("root's secret"), "\(name) holds a copy of the secret")
            }
        }
    }

    @Test func theOwnerOfALinkedDataDirectoryIsNotTakenFromItsTarget() throws {
        try withTree { base, data in
            mkdir(base + "/rootdir", 0o700)
            // The owner of base/data's parent would be root; here the data directory itself is
            // replaced by a link inside a nobody-owned directory.
            mkdir(data + "/pg", 0o700)
            chown(data + "/pg", nobody.uid, nobody.gid)
            symlink(base + "/rootdir", data + "/pg/main")
            #expect(throws: DatabaseError.self) { try StandbySetup.dataOwner(data + "/pg/main") }
        }
    }
}
