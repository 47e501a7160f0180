// Building a standby: making the local (stopped) server a streaming standby of the peer's
// primary, whatever its data directory holds — nothing, a diverged old primary, or a copy of
// another cluster — with pg_rewind where that is cheaper, pg_basebackup otherwise.
import ClusterCore
import Glibc
// See DatabaseController.swift: both modules' Glibc types must be visible in every file.
import CNetlink

/// How `StandbySetup.makeStandby` builds the standby.
public enum CloneMethod: String, Sendable, CaseIterable {
    /// pg_basebackup when the local directory holds no cluster, another cluster, or when copying
    /// the whole database costs less than what pg_rewind copies anyway (all of the primary's
    /// WAL directory); pg_rewind otherwise, falling back to pg_basebackup if it fails.
    case auto
    /// pg_rewind only (fails if the local cluster cannot be rewound).
    case rewind
    /// A fresh copy with pg_basebackup.
    case basebackup
}

/// What the primary said before a clone.
public struct PrimaryFacts: Sendable, Equatable {
    public var systemIdentifier: String
    /// The sum of pg_database_size over all databases.
    public var databaseBytes: UInt64
    /// The size of its pg_wal directory: what pg_rewind copies in any case.
    public var walBytes: UInt64

    public init(systemIdentifier: String, databaseBytes: UInt64, walBytes: UInt64) {
        self.systemIdentifier = systemIdentifier
        self.databaseBytes = databaseBytes
        self.walBytes = walBytes
    }
}

extension StandbySetup {
    /// The settings a standby built here gets in postgresql.auto.conf, besides primary_conninfo.
    /// wal_retrieve_retry_interval: with the default 5 s a promote right after the primary died
    /// can stall for up to 5 s (seen one time in six on PostgreSQL 15). synchronous_standby_names
    /// is emptied: a copy of the primary's own setting would make the promoted standby wait for
    /// itself (kusu-ha sets it again after a takeover).
    static func standbySettings(slot: String) -> [(String, String)] {
        [
            ("primary_slot_name", configQuote(slot)),
            ("wal_retrieve_retry_interval", configQuote("200ms")),
            ("synchronous_standby_names", configQuote("")),
        ]
    }

    /// Makes the stopped local server a standby of the primary at `primaryConninfo` without copying
    /// anything and without talking to the primary: standby.signal, primary_conninfo with
    /// `application_name`, and the standby settings (the slot `slot`, which the new primary
    /// made when it took over). For an old primary that stopped cleanly where the new primary's
    /// timeline begins — a switchover —, which then streams from there (recovery follows the
    /// latest timeline). If the local cluster diverged, the server stays a standby that does not
    /// stream, its data intact, and a rejoin with pg_rewind is needed.
    public static func follow(dataDirectory: String, primaryConninfo: String, applicationName: String, slot: String) throws(DatabaseError) {
        try prepareStandby(dataDirectory: dataDirectory, primaryConninfo: primaryConninfo, applicationName: applicationName, rewind: false)
        try configure(dataDirectory, settings: standbySettings(slot: slot), owner: try dataOwner(dataDirectory))
    }

    /// Chooses the method for `.auto`, from what the local directory holds and what the primary said.
    public static func chooseMethod(
        _ requested: CloneMethod, localSystemIdentifier: String?, primary: PrimaryFacts
    ) -> (method: CloneMethod, why: String) {
        switch requested {
        case .rewind: return (.rewind, "pg_rewind was asked for")
        case .basebackup: return (.basebackup, "pg_basebackup was asked for")
        case .auto: break
        }
        guard let local = localSystemIdentifier else {
            return (.basebackup, "the local data directory holds no database cluster")
        }
        guard local == primary.systemIdentifier else {
            return (.basebackup, "the local cluster (system \(local)) is not a copy of the primary's (system \(primary.systemIdentifier))")
        }
        if primary.databaseBytes <= primary.walBytes {
            return (
                .basebackup,
                "copying the database (\(primary.databaseBytes / 1_048_576) MiB) costs less than pg_rewind, which copies the "
                    + "primary's WAL directory (\(primary.walBytes / 1_048_576) MiB)")
        }
        return (.rewind, "the local cluster is a copy of the primary's and the database is larger than its WAL directory")
    }

    /// Makes the stopped local server in `dataDirectory` a standby of the primary at
    /// `primaryConninfo`: ensures the replication slot `slot` on the primary (so it keeps the
    /// WAL this standby still needs), then pg_rewind or pg_basebackup (see `CloneMethod`), then
    /// standby.signal, primary_conninfo with `application_name`, primary_slot_name,
    /// wal_retrieve_retry_interval = 200ms and an empty synchronous_standby_names.
    ///
    /// pg_basebackup needs an empty directory: an existing one is renamed to
    /// `<dataDirectory>.kusu-previous` (replacing an older one) and renamed back if the copy
    /// fails, so nothing is lost; after a success it stays for the administrator to remove.
    /// `progress` receives short lines in words while it runs (on the calling thread).
    /// Returns the method used.
    @discardableResult
    public static func makeStandby(
        dataDirectory: String, primaryConninfo: String, applicationName: String, slot: String, method requested: CloneMethod,
        postgresBinDirectory: String = "/usr/lib/postgresql/15/bin", copyTimeout: Duration = .seconds(6 * 3600),
        progress: (String) -> Void = { _ in }
    ) throws(DatabaseError) -> CloneMethod {
        if let directory = try? SafeDirectory.open(dataDirectory), let pid = postmasterPID(directory), kill(pid, 0) == 0 {
            throw DatabaseError(.rejoinFailed, "PostgreSQL is still running in \(dataDirectory) (pid \(pid)): stop it first")
        }
        let owner = try dataOwner(dataDirectory)
        progress("asking the primary (\(redacted(primaryConninfo)))")
        let facts = try preparePrimary(primaryConninfo, slot: slot, ownerUID: owner.uid)
        let local = localSystemIdentifier(dataDirectory, postgresBinDirectory: postgresBinDirectory)
        var (method, why) = chooseMethod(requested, localSystemIdentifier: local, primary: facts)
        progress("\(method == .rewind ? "pg_rewind" : "pg_basebackup"): \(why)")
        if method == .rewind {
            do {
                try prepareStandby(
                    dataDirectory: dataDirectory, primaryConninfo: primaryConninfo, applicationName: applicationName,
                    rewind: true, postgresBinDirectory: postgresBinDirectory)
            } catch {
                guard requested == .auto else { throw error }
                progress("pg_rewind failed (\(error.message)); copying with pg_basebackup instead")
                method = .basebackup
            }
        }
        if method == .basebackup {
            try baseBackup(
                dataDirectory: dataDirectory, primaryConninfo: primaryConninfo, slot: slot, owner: owner,
                postgresBinDirectory: postgresBinDirectory, timeout: copyTimeout, progress: progress)
            try prepareStandby(
                dataDirectory: dataDirectory, primaryConninfo: primaryConninfo, applicationName: applicationName,
                rewind: false, postgresBinDirectory: postgresBinDirectory)
        }
        try configure(dataDirectory, settings: standbySettings(slot: slot), owner: owner)
        progress("configured as a standby of the primary (slot \(slot))")
        return method
    }

    /// Sets `settings` in postgresql.auto.conf (each replacing an existing line).
    static func configure(_ dataDirectory: String, settings: [(String, String)], owner: (uid: uid_t, gid: gid_t)) throws(DatabaseError) {
        do {
            let directory = try SafeDirectory.open(dataDirectory)
            var text = try directory.readRegularFile("postgresql.auto.conf") ?? ""
            for (name, value) in settings { text = replacingSetting(name, with: value, in: text) }
            try directory.writeOwnedFile("postgresql.auto.conf", contents: text, uid: owner.uid, gid: owner.gid)
        } catch {
            throw DatabaseError(.rejoinFailed, error.message)
        }
    }

    /// The owner of the data directory, or of its parent when it does not exist yet.
    static func dataOwner(_ dataDirectory: String) throws(DatabaseError) -> (uid: uid_t, gid: gid_t) {
        // Read without following links: a link in place of the data directory would name the
        // owner of whatever it points to (root's /root, say) as the user to run the copy as.
        let (parentPath, name) = splitPath(dataDirectory)
        let parent: SafeDirectory
        do { parent = try SafeDirectory.open(parentPath) } catch {
            throw DatabaseError(.rejoinFailed, "the directory of \(dataDirectory) cannot be used: \(error.message)")
        }
        var info = stat()
        if fstatat(parent.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw DatabaseError(.rejoinFailed, "\(dataDirectory) exists and is not a directory (a link is not followed)")
            }
            return (info.st_uid, info.st_gid)
        }
        do { return try parent.owner() } catch { throw DatabaseError(.rejoinFailed, error.message) }
    }

    /// The system identifier of the cluster in `dataDirectory` (pg_controldata), nil when it
    /// holds none (missing, empty, or no control file).
    static func localSystemIdentifier(_ dataDirectory: String, postgresBinDirectory: String) -> String? {
        guard access("\(dataDirectory)/global/pg_control", F_OK) == 0 else { return nil }
        guard let result = try? runSubprocess([postgresBinDirectory + "/pg_controldata", "-D", dataDirectory], timeout: .seconds(30)),
            result.status == 0
        else { return nil }
        for line in result.output.split(separator: "\n") where line.hasPrefix("Database system identifier:") {
            return line.dropFirst("Database system identifier:".count).trimmingCharacters(in: " \t")
        }
        return nil
    }

    /// Connects to the primary (as root, with the data owner's ~/.pgpass when the conninfo
    /// names no passfile: pg_rewind and pg_basebackup run as that owner and use it), checks it is
    /// a primary, reads what `chooseMethod` needs and creates the replication slot if missing.
    static func preparePrimary(_ conninfo: String, slot: String, ownerUID: uid_t) throws(DatabaseError) -> PrimaryFacts {
        let failure = { (message: String) in
            DatabaseError(.rejoinFailed, "cannot use \(redacted(conninfo)) as the primary: \(message)")
        }
        do throws(PostgresError) {
            let primary = try PostgresConnection(conninfo: withOwnerPassfile(conninfo, ownerUID: ownerUID))
            guard try primary.scalar("SELECT pg_is_in_recovery()") == "f" else {
                throw PostgresError(message: "it is itself a standby (in recovery), not a primary")
            }
            let row = try primary.query("""
                SELECT (SELECT system_identifier::text FROM pg_control_system()),
                       (SELECT sum(pg_database_size(oid))::bigint FROM pg_database),
                       (SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir())
                """).first ?? []
            guard row.count == 3, let system = row[0], let database = row[1].flatMap({ UInt64($0) }), let wal = row[2].flatMap({ UInt64($0) })
            else { throw PostgresError(message: "unexpected answer about its size: \(row)") }
            try primary.query("""
                SELECT pg_create_physical_replication_slot($1)
                WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)
                """, [slot])
            return PrimaryFacts(systemIdentifier: system, databaseBytes: database, walBytes: wal)
        } catch {
            throw failure(error.message)
        }
    }

    /// `command` run as the data directory's owner: through setpriv when we are someone else (root).
    static func asOwner(_ command: [String], _ owner: (uid: uid_t, gid: gid_t)) -> [String] {
        guard getuid() != owner.uid else { return command }
        return ["/usr/bin/setpriv", "--reuid=\(owner.uid)", "--regid=\(owner.gid)", "--init-groups", "--"] + command
    }

    /// `conninfo` plus passfile=<owner's ~/.pgpass> when it has none and we are not the owner.
    static func withOwnerPassfile(_ conninfo: String, ownerUID: uid_t) -> String {
        guard !conninfo.contains("://"), !conninfo.contains("passfile"), getuid() != ownerUID,
            let entry = getpwuid(ownerUID), let home = entry.pointee.pw_dir
        else { return conninfo }
        let passfile = String(cString: home) + "/.pgpass"
        return access(passfile, R_OK) == 0 ? conninfo + " passfile=" + PostgresConnection.quote(passfile) : conninfo
    }

    /// pg_basebackup into a fresh `dataDirectory` (the old one moved aside, and back on failure).
    static func baseBackup(
        dataDirectory: String, primaryConninfo: String, slot: String, owner: (uid: uid_t, gid: gid_t),
        postgresBinDirectory: String, timeout: Duration, progress: (String) -> Void
    ) throws(DatabaseError) {
        // All in the parent directory, reached without following another user's links; names
        // are renamed and removed relative to it (a link swapped in is moved, never followed),
        // and trees are removed by the owner (rm as root would go wherever a link pointed).
        let (parentPath, name) = splitPath(dataDirectory)
        let parent: SafeDirectory
        do { parent = try SafeDirectory.open(parentPath) } catch {
            throw DatabaseError(.rejoinFailed, "the directory of \(dataDirectory) cannot be used: \(error.message)")
        }
        let previousName = name + ".kusu-previous"
        let previous = dataDirectory + ".kusu-previous"
        var movedAside = false
        if directoryHasEntries(dataDirectory) {
            if parent.contains(previousName) { try removeTree(previousName, in: parent, owner: owner) }
            guard renameat(parent.fd, name, parent.fd, previousName) == 0 else {
                throw DatabaseError(.rejoinFailed, "cannot move \(dataDirectory) aside to \(previous): \(errnoText())")
            }
            movedAside = true
            progress("the previous data directory is kept as \(previous)")
        } else if parent.contains(name) {
            unlinkat(parent.fd, name, AT_REMOVEDIR)
        }
        func restore() {
            try? removeTree(name, in: parent, owner: owner)
            if movedAside { renameat(parent.fd, previousName, parent.fd, name) }
        }
        do { try parent.makeOwnedDirectory(name, uid: owner.uid, gid: owner.gid) } catch {
            restore()
            throw DatabaseError(.rejoinFailed, error.message)
        }
        var command = [
            postgresBinDirectory + "/pg_basebackup", "--pgdata=\(dataDirectory)", "--dbname=\(primaryConninfo)",
            "--wal-method=stream", "--checkpoint=fast", "--slot=\(slot)", "--progress", "--no-password",
        ]
        command = asOwner(command, owner)
        var lastShown = -1
        let result: SubprocessResult
        do {
            result = try runSubprocess(command, timeout: timeout) { chunk in
                // "--progress" rewrites one line: "12345/67890 kB (18%), 0/1 tablespace".
                guard let percent = lastPercent(in: chunk), percent >= lastShown + 10 || (percent == 100 && lastShown != 100) else { return }
                lastShown = percent
                progress("pg_basebackup: \(percent) % copied")
            }
        } catch {
            restore()
            throw DatabaseError(error.timedOut ? .timeout : .rejoinFailed, "pg_basebackup into \(dataDirectory): \(error.message)")
        }
        guard result.status == 0 else {
            restore()
            throw DatabaseError(
                .rejoinFailed, "pg_basebackup from the primary failed (\(result.statusText)): \(result.lastLines)"
                    + (movedAside ? "; the previous data directory was put back" : ""))
        }
    }

    /// The last "(NN%)" in pg_basebackup's progress output.
    static func lastPercent(in text: String) -> Int? {
        var found: Int?
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "(") {
            let after = rest[rest.index(after: open)...]
            if let close = after.firstIndex(of: "%"), let value = Int(after[..<close]), (0...100).contains(value) {
                found = value
            }
            rest = after
        }
        return found
    }

    static func directoryHasEntries(_ path: String) -> Bool {
        guard let directory = opendir(path) else { return false }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { return true }
        }
        return false
    }

    /// Removes the tree `name` in `parent`: its contents by the data directory's owner (find
    /// -delete, one file system, no link followed: it can remove only what that user could),
    /// then the emptied directory itself by name (a link there is removed, not followed).
    static func removeTree(_ name: String, in parent: SafeDirectory, owner: (uid: uid_t, gid: gid_t)) throws(DatabaseError) {
        let path = parent.path + "/" + name
        var info = stat()
        guard fstatat(parent.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let result: SubprocessResult
            do {
                result = try runSubprocess(asOwner(["/usr/bin/find", path, "-xdev", "-mindepth", "1", "-delete"], owner), timeout: .seconds(600))
            } catch {
                throw DatabaseError(.rejoinFailed, "cannot remove \(path): \(error.message)")
            }
            guard result.status == 0 else { throw DatabaseError(.rejoinFailed, "cannot remove \(path): \(result.lastLines)") }
        }
        guard unlinkat(parent.fd, name, (info.st_mode & S_IFMT) == S_IFDIR ? AT_REMOVEDIR : 0) == 0 else {
            throw DatabaseError(.rejoinFailed, "cannot remove \(path): \(errnoText())")
        }
    }

    /// A conninfo for messages: any password=... value hidden.
    static func redacted(_ conninfo: String) -> String {
        conninfo.split(separator: " ").map { $0.hasPrefix("password=") ? "password=…" : String($0) }.joined(separator: " ")
    }
}
