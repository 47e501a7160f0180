// The kusu-ha command line, AssertExecuteCommand-style: the built executable is
// run as a subprocess (HAClientTests cannot link the executable target), with
// COLUMNS=80 and a system bus address that does not exist, so nothing is changed.
import Foundation
import Testing

struct Run {
    var stdout: String
    var stderr: String
    var status: Int32
}

/// The kusu-ha binary next to the test bundle (swift build / swift test build both).
let kusuHA: URL = {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // The test bundle may be a directory (…/X.xctest/…); walk up to the products directory.
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("kusu-ha").path), dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("kusu-ha")
}()

func kusu(_ arguments: [String]) throws -> Run {
    let p = Process()
    p.executableURL = kusuHA
    p.arguments = arguments
    p.environment = ["COLUMNS": "80", "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/kusu-ha-test-bus",
                     "PATH": "/usr/bin:/bin"]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Run(stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self),
               status: p.terminationStatus)
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: kusuHA.path), "kusu-ha is not built"))
struct CLI {
    @Test func rootHelp() throws {
        let r = try kusu(["--help"])
        #expect(r.status == 0)
        #expect(r.stdout == """
            OVERVIEW: Show and control a kusu-ha high-availability pair.

            kusu-ha talks to the two kusu-ha services of this node on the D-Bus system bus:
            kusu-hbd (org.kusu.Heartbeat1: roles, peer health, switching) and
            kusu-effectord (org.kusu.Effector1: floating addresses, the database, the KUSU
            units). Everything it does can also be done with busctl. It honours
            DBUS_SYSTEM_BUS_ADDRESS.

            Changes are authorised by polkit; calls allow interactive authorisation (a
            polkit agent may ask for a password) unless --no-ask-password is given. Members
            of the group kusu-admin are authorised without a password.

            EXIT STATUS
              0   success
              1   the operation was refused or failed (the error names why)
              3   not authorized (the line names the polkit action)
              4   the system bus or a service is unreachable ("kusu-hbd is not running")
              64  usage error (bad command line)

            USAGE: kusu-ha [--config <path>] [--no-ask-password] <subcommand>

            OPTIONS:
              --config <path>         The configuration file; read only for names, if
                                      present (the client works without it). (default:
                                      /etc/kusu-ha/kusu-ha.toml)
              --no-ask-password       Do not let polkit ask for a password: fail at once if
                                      not authorized.
              --version               Show the version.
              -h, --help              Show help information.

            SUBCOMMANDS:
              status                  Show the state of this node, its peer and its
                                      resources.
              watch                   Print cluster events as they happen, until
                                      interrupted.
              switchover              Hand the active role over to the peer, with zero data
                                      loss.
              takeover                Make this node active.
              release                 Stop the units and remove the floating addresses on
                                      this node.
              maintenance             Switch maintenance mode on or off.
              auto-failover           Switch automatic failover on or off.
              address                 Add, remove or announce a floating address on this
                                      node.
              database                Promote the local database, make it a standby of the
                                      peer, or build one from scratch.
              units                   Start or stop the configured KUSU units.
              resource                Clean up the failures of the resources this node
                                      serves.
              sync                    Keep the KUSU file trees ([[sync]]) on the standby.

              See 'kusu-ha help <subcommand>' for detailed help.

            """)
    }

    @Test func subcommandHelp() throws {
        let r = try kusu(["address", "add", "--help"])
        #expect(r.status == 0)
        #expect(r.stdout == """
            OVERVIEW: Add a configured floating address (idempotent).

            org.kusu.Effector1.AddAddress. ADDR may carry its /prefix.

            USAGE: kusu-ha address add [--config <path>] [--no-ask-password] <addr>

            ARGUMENTS:
              <addr>                  The floating address, e.g. 198.18.0.100.

            OPTIONS:
              --config <path>         The configuration file; read only for names, if
                                      present (the client works without it). (default:
                                      /etc/kusu-ha/kusu-ha.toml)
              --no-ask-password       Do not let polkit ask for a password: fail at once if
                                      not authorized.
              --version               Show the version.
              -h, --help              Show help information.

            """ + "\n")
    }

    @Test(arguments: [
        ["maintenance", "maybe"], ["auto-failover"], ["address", "add"], ["address", "add", "a", "b"],
        ["database", "rejoin"], ["units", "restart"], ["takeover", "--forse"], ["frobnicate"],
        ["status", "--json", "extra"], ["resource", "cleanup", "a", "b"],
    ] as [[String]])
    func usageErrors(arguments: [String]) throws {
        let r = try kusu(arguments)
        #expect(r.status == 64, "\(arguments): \(r.stderr)")
        #expect(r.stderr.contains("Usage: kusu-ha") || r.stderr.contains("Error:"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    /// Well-formed commands reach the point of connecting: no bus → exit 4 and one line.
    @Test(arguments: [
        ["status"], ["status", "--json"], ["takeover", "--force"], ["switchover"], ["release", "--reason", "test"],
        ["maintenance", "on"], ["auto-failover", "off"], ["address", "add", "198.18.0.100"],
        ["address", "remove", "198.18.0.100/24"], ["address", "announce", "198.18.0.100"], ["database", "promote"],
        ["database", "rejoin", "failover"], ["units", "start"], ["units", "stop", "--no-ask-password"],
        ["watch"], ["status", "--config", "/nonexistent.toml"], ["--no-ask-password", "units", "start"],
        ["--config", "/nonexistent.toml", "address", "add", "198.18.0.100"],
        ["resource", "cleanup"], ["resource", "cleanup", "nginx.service"],
    ] as [[String]])
    func parsedCommandsNeedTheBus(arguments: [String]) throws {
        let r = try kusu(arguments)
        #expect(r.status == 4, "\(arguments): \(r.stderr)")
        #expect(r.stderr == "kusu-ha: cannot connect to the system bus: sd_bus_open_system: No such file or directory\n")
        #expect(r.stdout.isEmpty)
    }

    @Test func version() throws {
        let r = try kusu(["--version"])
        #expect(r.status == 0 && r.stdout == "0.1.0\n")
    }
}
