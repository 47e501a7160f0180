import FileSync
import Glibc
import Testing

@Suite struct StatusCodec {
    static let sample = FileSyncStatus(trees: [
        TreeStatus(path: "/srv/kusu/repos", state: .synchronised, lastSuccessUSec: 1_700_000_000_000_000,
                   lastAttemptUSec: 1_700_000_000_000_000, sinceUSec: 1_699_999_000_000_000),
        TreeStatus(path: "/tftp\tboot\\x", state: .failed, lastSuccessUSec: 0, lastAttemptUSec: 1_700_000_001_000_000,
                   sinceUSec: 1_700_000_001_500_000, message: "line one\nline two\r\n\ttabbed \\ back"),
        TreeStatus(path: "/depot", state: .paused, sinceUSec: 5, message: "this node is active: it is the source, not a copy"),
        TreeStatus(path: "/x", state: .notPulled),
        TreeStatus(path: "/y", state: .pending),
    ])

    @Test func roundTrip() throws {
        let text = Self.sample.encoded
        #expect(try FileSyncStatus(decoding: text) == Self.sample)
        // One line per tree: nothing inside a field breaks a line.
        #expect(text.split(separator: "\n").count == 1 + Self.sample.trees.count)
    }

    @Test func stableText() {
        let status = FileSyncStatus(trees: [
            TreeStatus(path: "/srv/kusu/repos", state: .failed, lastSuccessUSec: 1, lastAttemptUSec: 2, sinceUSec: 3, message: "no\tway"),
        ])
        #expect(status.encoded == "kusu-ha-sync-status 1\ntree\t/srv/kusu/repos\tfailed\t1\t2\t3\tno\\tway\n")
        #expect(status["/srv/kusu/repos"]?.message == "no\tway")
        #expect(status["/nope"] == nil)
    }

    @Test func emptyListIsValid() throws {
        #expect(try FileSyncStatus(decoding: "kusu-ha-sync-status 1\n").trees.isEmpty)
    }

    @Test func unknownLineKindsAreSkipped() throws {
        let text = "kusu-ha-sync-status 1\nfuture\tstuff\n" + Self.sample.encoded.split(separator: "\n").dropFirst().joined(separator: "\n")
        #expect(try FileSyncStatus(decoding: text) == Self.sample)
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var name: String
        var text: String
        var error: String
        var testDescription: String { name }
    }

    static let bad: [Bad] = [
        Bad(name: "empty", text: "", error: "/s: the file is empty"),
        Bad(name: "other file", text: "hello\n", error: "/s:1: not a kusu-ha sync status file (the first line is not \"kusu-ha-sync-status 1\")"),
        Bad(name: "newer version", text: "kusu-ha-sync-status 2\n", error: "/s:1: version \"2\" is not supported (this kusu-ha reads version 1)"),
        Bad(name: "too few fields", text: "kusu-ha-sync-status 1\ntree\t/a\tfailed\n", error: "/s:2: a tree line has 7 fields, this one 3"),
        Bad(name: "bad state", text: "kusu-ha-sync-status 1\ntree\t/a\thappy\t0\t0\t0\t\n", error: "/s:2: unknown state \"happy\""),
        Bad(name: "bad time", text: "kusu-ha-sync-status 1\ntree\t/a\tfailed\t-1\t0\t0\t\n",
            error: "/s:2: the last success time \"-1\" is not a number of microseconds"),
        Bad(name: "huge time", text: "kusu-ha-sync-status 1\ntree\t/a\tfailed\t0\t99999999999999999999999\t0\t\n",
            error: "/s:2: the last attempt time \"99999999999999999999999\" is not a number of microseconds"),
        Bad(name: "relative path", text: "kusu-ha-sync-status 1\ntree\ta\tfailed\t0\t0\t0\t\n", error: "/s:2: the path \"a\" is not absolute"),
        Bad(name: "bad escape", text: "kusu-ha-sync-status 1\ntree\t/a\tfailed\t0\t0\t0\tx\\q\n", error: "/s:2: unknown escape \"\\q\""),
        Bad(name: "lone backslash", text: "kusu-ha-sync-status 1\ntree\t/a\tfailed\t0\t0\t0\tx\\\n", error: "/s:2: a field ends in a lone backslash"),
    ]

    @Test(arguments: bad)
    func corruptFilesGiveClearErrors(bad: Bad) {
        #expect {
            _ = try FileSyncStatus(decoding: bad.text, file: "/s")
        } throws: { error in
            "\(error)" == bad.error
        }
    }

    /// Truncated and mangled versions of a valid file: an error or a value, never a trap.
    @Test func mangledFilesNeverTrap() {
        let text = Array(Self.sample.encoded.utf8)
        var seed: UInt64 = 0x5EED
        func next() -> UInt64 {
            seed &+= 0x9E37_79B9_7F4A_7C15
            var z = seed
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        for length in 0...text.count {
            _ = try? FileSyncStatus(decoding: String(decoding: text.prefix(length), as: UTF8.self))
        }
        for _ in 0..<2000 {
            var bytes = text
            for _ in 0..<(1 + Int(next() % 4)) {
                bytes[Int(next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: next())
            }
            _ = try? FileSyncStatus(decoding: String(decoding: bytes, as: UTF8.self))
        }
    }
}

@Suite struct StatusFile {
    func temporaryDirectory() -> String {
        var template = Array("/tmp/kusu-filesync-test.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil)
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    @Test func writeThenRead() throws {
        let dir = temporaryDirectory()
        defer { _ = unlink(dir + "/status"); _ = rmdir(dir) }
        try StatusCodec.sample.write(path: dir + "/status")
        #expect(try FileSyncStatus.read(path: dir + "/status") == StatusCodec.sample)
        var info = stat()
        #expect(stat(dir + "/status", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o644, "kusu-hbd (user kusu-ha) reads it")
    }

    @Test func missingFile() {
        #expect {
            _ = try FileSyncStatus.read(path: "/nonexistent/kusu-ha-sync/status")
        } throws: { error in
            guard let error = error as? FileSyncStatusError else { return false }
            return error.missing && error.description == "/nonexistent/kusu-ha-sync/status: No such file or directory"
        }
    }

    @Test func notUTF8() throws {
        let dir = temporaryDirectory()
        defer { _ = unlink(dir + "/status"); _ = rmdir(dir) }
        let fd = open(dir + "/status", O_WRONLY | O_CREAT, 0o644)
        let bytes: [UInt8] = [0xFF, 0xFE, 0x0A]
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect {
            _ = try FileSyncStatus.read(path: dir + "/status")
        } throws: { error in
            (error as? FileSyncStatusError)?.missing == false && "\(error)".hasSuffix(": the file is not valid UTF-8")
        }
    }

    @Test func aDirectoryIsNotAStatusFile() {
        #expect(throws: FileSyncStatusError.self) { _ = try FileSyncStatus.read(path: "/tmp") }
    }
}

@Suite struct StatusWords {
    static let now: UInt64 = 1_700_000_100_000_000

    @Test func ages() {
        func age(_ seconds: UInt64) -> String { TreeStatus.age(since: Self.now - seconds * 1_000_000, now: Self.now) }
        #expect(age(0) == "just now")
        #expect(age(12) == "12 s ago")
        #expect(age(59) == "59 s ago")
        #expect(age(60) == "1 min ago")
        #expect(age(3599) == "59 min ago")
        #expect(age(3600) == "1 h ago")
        #expect(age(3 * 3600 + 5 * 60) == "3 h 5 min ago")
        #expect(age(86400) == "1 d ago")
        #expect(age(2 * 86400 + 4 * 3600 + 59) == "2 d 4 h ago")
        #expect(TreeStatus.age(since: Self.now + 1, now: Self.now) == "in the future")
    }

    @Test func describe() {
        let tenAgo = Self.now - 10_000_000
        let hourAgo = Self.now - 3_600_000_000
        #expect(TreeStatus(path: "/a", state: .synchronised, lastSuccessUSec: tenAgo, lastAttemptUSec: tenAgo)
            .describe(now: Self.now) == "synchronised 10 s ago")
        #expect(TreeStatus(path: "/a", state: .failed, lastSuccessUSec: hourAgo, lastAttemptUSec: tenAgo, message: "boom")
            .describe(now: Self.now) == "failed 10 s ago: boom; last synchronised 1 h ago")
        #expect(TreeStatus(path: "/a", state: .failed, lastAttemptUSec: tenAgo, message: "boom")
            .describe(now: Self.now) == "failed 10 s ago: boom; never synchronised")
        #expect(TreeStatus(path: "/a", state: .paused, lastSuccessUSec: hourAgo, message: "this node is active: it is the source, not a copy")
            .describe(now: Self.now) == "paused: this node is active: it is the source, not a copy; last synchronised 1 h ago")
        #expect(TreeStatus(path: "/a", state: .pending).describe(now: Self.now) == "not synchronised yet")
        #expect(TreeStatus(path: "/a", state: .notPulled).describe(now: Self.now) == "not pulled here (pull = false)")
    }

    @Test func transitions() {
        var tree = TreeStatus(path: "/a", state: .pending, sinceUSec: 1)
        tree.recordFailure("boom", started: 10, at: 12)
        #expect(tree == TreeStatus(path: "/a", state: .failed, lastAttemptUSec: 10, sinceUSec: 12, message: "boom"))
        tree.recordFailure("boom", started: 20, at: 22)
        #expect(tree.sinceUSec == 12, "the same failure again: failing since the first")
        tree.recordSuccess(started: 30, at: 31)
        #expect(tree == TreeStatus(path: "/a", state: .synchronised, lastSuccessUSec: 30, lastAttemptUSec: 30, sinceUSec: 31))
        #expect(tree.ok)
        tree.enter(.paused, message: "this node is active: it is the source, not a copy", at: 40)
        #expect(tree.state == .paused && tree.sinceUSec == 40 && tree.lastSuccessUSec == 30)
    }
}
