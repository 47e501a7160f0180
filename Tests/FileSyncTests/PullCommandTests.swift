import ClusterCore
import FileSync
import Testing

@Suite struct PullCommand {
    @Test func ipv4WithDelete() {
        let command = RsyncPullCommand(tree: SyncTree(path: "/srv/kusu/repos"), index: 0,
                                       peer: IPAddress("198.18.4.11")!, local: IPAddress("198.18.4.12")!)
        #expect(command.arguments == [
            "/usr/bin/rsync", "--archive", "--numeric-ids", "--no-devices",
            "--delay-updates", "--partial-dir=.kusu-sync-partial", "--mkpath", "--delete-delay",
            "--timeout=60", "--contimeout=5", "--no-motd", "--stats", "--no-human-readable", "--password-file=-",
            "--address=198.18.4.12",
            "--", "rsync://kusu-sync@198.18.4.11:873/kusu-0/", "/srv/kusu/repos/",
        ])
    }

    @Test func ipv6InBrackets() {
        let command = RsyncPullCommand(tree: SyncTree(path: "/depot"), index: 3, peer: IPAddress("2001:db8::11")!,
                                       local: IPAddress("2001:db8::12")!)
        #expect(command.source == "rsync://kusu-sync@[2001:db8::11]:873/kusu-3/")
        #expect(command.arguments.contains("--address=2001:db8::12"))
        #expect(command.arguments.last == "/depot/")
    }

    @Test func excludesAndNoDelete() {
        let tree = SyncTree(path: "/tftpboot", exclude: ["*.tmp", "/cache/"], delete: false)
        let argv = RsyncPullCommand(tree: tree, index: 1, peer: IPAddress("198.18.4.11")!).arguments
        #expect(!argv.contains { $0.hasPrefix("--delete") })
        #expect(argv.contains("--exclude=*.tmp"))
        #expect(argv.contains("--exclude=/cache/"))
        #expect(!argv.contains { $0.hasPrefix("--address") })
        // The excludes come before "--", the source and the destination come last.
        let dashes = argv.firstIndex(of: "--")!
        #expect(argv.firstIndex(of: "--exclude=/cache/")! < dashes)
        #expect(Array(argv[dashes...]) == ["--", "rsync://kusu-sync@198.18.4.11:873/kusu-1/", "/tftpboot/"])
    }

    @Test func pullOnlyNeverPush() {
        // Whatever the configuration, the peer is only ever the source, and the destination
        // is the local tree.
        let config = pairConfiguration(node: "failover", sync: [SyncTree(path: "/a"), SyncTree(path: "/b")])
        for (index, tree) in config.sync.enumerated() {
            for command in RsyncPullCommand.perLink(tree: tree, index: index, configuration: config) {
                let argv = command.arguments
                #expect(argv[argv.count - 2].hasPrefix("rsync://"))
                #expect(argv.last == tree.path + "/")
                #expect(argv.filter { $0.contains("rsync://") }.count == 1)
            }
        }
    }

    @Test func oneCommandPerLinkInLinkOrder() {
        let config = pairConfiguration(node: "failover", sync: [SyncTree(path: "/a")])
        let commands = RsyncPullCommand.perLink(tree: config.sync[0], index: 0, configuration: config)
        #expect(commands.map(\.peer) == [IPAddress("198.18.4.11")!, IPAddress("198.18.8.11")!])
        #expect(commands.map(\.local) == [IPAddress("198.18.4.12")!, IPAddress("198.18.8.12")!])
    }

    @Test func timeoutsRoundUpToWholeSeconds() {
        var command = RsyncPullCommand(tree: SyncTree(path: "/a"), index: 0, peer: IPAddress("198.18.4.11")!)
        command.ioTimeout = .milliseconds(1500)
        command.connectTimeout = .zero
        #expect(command.arguments.contains("--timeout=2"))
        #expect(command.arguments.contains("--contimeout=1"), "0 would mean no timeout at all")
    }
}

@Suite struct PullResult {
    @Test func successAndVanishedFiles() {
        #expect(RsyncResult(termination: .exited(0), output: "").succeeded)
        #expect(RsyncResult(termination: .exited(24), output: "").succeeded)
        #expect(!RsyncResult(termination: .exited(23), output: "").succeeded)
        #expect(!RsyncResult(termination: .signalled(15), output: "").succeeded)
    }

    @Test func waitStatus() {
        #expect(RsyncResult(waitStatus: 10 << 8, output: "").termination == .exited(10))
        #expect(RsyncResult(waitStatus: 15, output: "").termination == .signalled(15))
        #expect(RsyncResult(waitStatus: 0, output: "").termination == .exited(0))
    }

    @Test func whichFailuresTryTheNextLink() {
        for code: Int32 in [5, 10, 12, 30, 35] { #expect(RsyncResult(termination: .exited(code), output: "").worthAnotherLink) }
        for code: Int32 in [0, 1, 11, 23, 24] { #expect(!RsyncResult(termination: .exited(code), output: "").worthAnotherLink) }
        #expect(!RsyncResult(termination: .signalled(15), output: "").worthAnotherLink)
    }

    @Test func connectionRefused() {
        let result = RsyncResult(termination: .exited(10), output: """
            rsync: [Receiver] failed to connect to 198.18.4.11 (198.18.4.11): Connection refused (111)
            rsync error: error in socket IO (code 10) at clientserver.c(139) [Receiver=3.5.0]

            """)
        #expect(result.errorSummary ==
                "failed to connect to 198.18.4.11 (198.18.4.11): Connection refused (111) (rsync exit status 10: error in socket IO)")
    }

    @Test func daemonRefusal() {
        let result = RsyncResult(termination: .exited(5), output: """
            @ERROR: auth failed on module kusu-0
            rsync error: error starting client-server protocol (code 5) at main.c(1863) [Receiver=3.5.0]
            """)
        #expect(result.errorSummary ==
                "auth failed on module kusu-0 (rsync exit status 5: error starting client-server protocol)")
    }

    @Test func noOutput() {
        #expect(RsyncResult(termination: .exited(35), output: "").errorSummary ==
                "rsync exit status 35: timeout waiting for daemon connection")
        #expect(RsyncResult(termination: .signalled(9), output: "").errorSummary == "(rsync was killed by signal 9)")
        #expect(RsyncResult(termination: .exited(99), output: "").errorSummary == "rsync exit status 99")
    }

    @Test func statistics() {
        let output = """

            Number of files: 5 (reg: 3, dir: 2)
            Number of created files: 1 (reg: 1)
            Number of deleted files: 2 (reg: 2)
            Number of regular files transferred: 1
            Total file size: 1234567 bytes
            Total transferred file size: 1,048,576 bytes
            Literal data: 6 bytes
            sent 58 bytes  received 241 bytes  598.00 bytes/sec
            total size is 1234567  speedup is 4128.98
            """
        #expect(RsyncStatistics(output: output) ==
                RsyncStatistics(filesTransferred: 1, filesDeleted: 2, bytesTransferred: 1_048_576))
        #expect(RsyncStatistics(output: "rsync: something else\n") == nil)
    }
}
