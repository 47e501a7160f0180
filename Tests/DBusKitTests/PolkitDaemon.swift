import DBusKit
import Foundation
import Testing

/// A private system-like bus and, on demand, a real polkitd on it that sees the
/// project's polkit files (polkit/org.kusu.ha.policy and .rules) plus optional
/// test-only rules, through bind mounts in a private mount namespace (the host's
/// polkit directories are untouched). Needs root. Everything started here is
/// killed by its PID in `stop()`; the mounts vanish with polkitd's namespace.
final class PolkitFixture {
    static let polkitd = "/usr/lib/polkit-1/polkitd"
    static let available = getuid() == 0
        && FileManager.default.isExecutableFile(atPath: polkitd)
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/dbus-daemon")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/dbus-send")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")

    /// The repository root (this file is Tests/DBusKitTests/PolkitDaemon.swift).
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A well-known name the test service may own (root only, by the bus policy).
    static let serviceName: BusName = "org.kusu.PolkitTest"

    let directory: URL
    let address: String
    let loop: EventLoop
    /// Root's connection, for the test service and in-process calls.
    let bus: BusConnection
    private let daemon = Process()
    private var polkit: Process?

    /// Starts the bus (not polkitd). `extraRules`: JavaScript installed as
    /// rules.d/00-kusu-test.rules, evaluated before the project's rules.
    init(extraRules: String? = nil) throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("kusu-polkit-\(UUID().uuidString.prefix(8))")
        let fm = FileManager.default
        // polkitd drops to the user polkitd: everything it reads must be world-readable.
        let readable: [FileAttributeKey: Any] = [.posixPermissions: 0o755]
        try fm.createDirectory(at: directory.appendingPathComponent("actions"), withIntermediateDirectories: true,
                               attributes: readable)
        try fm.createDirectory(at: directory.appendingPathComponent("rules.d"), withIntermediateDirectories: true,
                               attributes: readable)
        try fm.setAttributes(readable, ofItemAtPath: directory.path)
        let project = Self.repository.appendingPathComponent("polkit")
        for (name, folder) in [("org.kusu.ha.policy", "actions"), ("org.kusu.ha.rules", "rules.d")] {
            let target = directory.appendingPathComponent(folder).appendingPathComponent(name)
            try fm.copyItem(at: project.appendingPathComponent(name), to: target)
            try fm.setAttributes([.posixPermissions: 0o644], ofItemAtPath: target.path)
        }
        if let extraRules {
            let target = directory.appendingPathComponent("rules.d/00-kusu-test.rules")
            try extraRules.write(to: target, atomically: true, encoding: .utf8)
            try fm.setAttributes([.posixPermissions: 0o644], ofItemAtPath: target.path)
        }

        // Like the system bus: deny by default, polkit's own policy file lets the
        // user polkitd own org.freedesktop.PolicyKit1, root may own the test name.
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>unix:path=\(directory.path)/bus</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
                <allow user="*"/>
                <deny own="*"/>
                <deny send_type="method_call"/>
                <allow send_type="signal"/>
                <allow send_requested_reply="true" send_type="method_return"/>
                <allow send_requested_reply="true" send_type="error"/>
                <allow receive_type="*"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
                <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
                      send_member="UpdateActivationEnvironment"/>
              </policy>
              <include ignore_missing="yes">/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
              <policy user="polkitd">
                <allow own="org.freedesktop.PolicyKit1"/>
              </policy>
              <policy user="root">
                <allow own="\(Self.serviceName)"/>
              </policy>
              <policy context="default">
                <allow send_destination="org.freedesktop.PolicyKit1"/>
                <allow send_destination="\(Self.serviceName)"/>
              </policy>
            </busconfig>
            """
        let configURL = directory.appendingPathComponent("bus.conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let pipe = Pipe()
        daemon.executableURL = URL(fileURLWithPath: "/usr/bin/dbus-daemon")
        daemon.arguments = ["--config-file=\(configURL.path)", "--nofork", "--print-address=1"]
        daemon.standardOutput = pipe
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        var data = Data()
        while !data.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            data.append(chunk)
        }
        address = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        guard !address.isEmpty else {
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
            throw DBusError.failed("dbus-daemon printed no address")
        }
        do {
            loop = try EventLoop()
            bus = try BusConnection(address: address, on: loop)
        } catch {
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
            throw error
        }
    }

    /// Starts polkitd (as root; it switches to the user polkitd itself) in a
    /// private mount namespace where /usr/share/polkit-1/actions holds only
    /// the project's policy, /etc/polkit-1/rules.d only our rules, and
    /// /usr/share/polkit-1/rules.d is empty. Waits (bounded) until it owns its name.
    func startPolkit() throws {
        let script = """
            mount --bind "$1/actions" /usr/share/polkit-1/actions && \
            mount --bind "$1/rules.d" /etc/polkit-1/rules.d && \
            mount -t tmpfs -o mode=0755 none /usr/share/polkit-1/rules.d && \
            exec env DBUS_SYSTEM_BUS_ADDRESS="$2" \(Self.polkitd) --no-debug
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        // unshare execs sh, which execs env, which execs polkitd: one PID throughout.
        process.arguments = ["--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh",
                             directory.path, address]
        process.standardOutput = FileHandle.nullDevice
        let log = directory.appendingPathComponent("polkitd.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        polkit = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try hasOwner(PolkitAuthority.busName) { return }
            if !process.isRunning { break }
            usleep(20_000)
        }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        stopPolkit()
        throw DBusError.failed("polkitd did not take org.freedesktop.PolicyKit1: \(output)")
    }

    func stopPolkit() {
        guard let polkit else { return }
        self.polkit = nil
        if polkit.isRunning {
            // SIGKILL: children inherit the test thread's signal mask, where SIGTERM may be blocked.
            kill(polkit.processIdentifier, SIGKILL)
        }
        polkit.waitUntilExit()
    }

    func hasOwner(_ name: BusName) throws -> Bool {
        try bus.callSync(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                         interface: "org.freedesktop.DBus", member: "NameHasOwner",
                         [.string(name.rawValue)], timeout: .seconds(2)).first?.bool == true
    }

    func stop() {
        stopPolkit()
        if daemon.isRunning {
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }

    /// Drives the loop until `condition` holds, for at most `seconds`.
    @discardableResult
    func wait(seconds: Int = 10, _ condition: () -> Bool) throws -> Bool {
        try loop.run(until: loop.now + .seconds(seconds), condition)
    }

    /// Starts `arguments` as `user` (real and effective uid/gid, the user's own
    /// groups from the group database) with setpriv; stdout and stderr are
    /// collected while the loop runs (see `finish`).
    func start(as user: String, _ arguments: [String]) throws -> Subprocess {
        try Subprocess(loop: loop, arguments: ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(try Self.gid(of: user))",
                                               "--init-groups", "--"] + arguments)
    }

    /// Runs `arguments` as `user` to completion, driving the loop meanwhile
    /// (the test service lives on it), for at most `seconds`.
    func run(as user: String, _ arguments: [String], seconds: Int = 20) throws -> (status: Int32, output: String) {
        let p = try start(as: user, arguments)
        return try p.finish(self, seconds: seconds)
    }

    /// Calls a method of the test service with dbus-send as `user`; returns the
    /// error line ("org.freedesktop.DBus.Error.X: message") or nil on success.
    func dbusSend(as user: String, _ member: String, _ arguments: [String]) throws -> String? {
        let r = try run(as: user, dbusSendArguments(member, arguments))
        if r.status == 0 { return nil }
        return Self.errorLine(r.output)
    }

    func dbusSendArguments(_ member: String, _ arguments: [String]) -> [String] {
        ["/usr/bin/dbus-send", "--bus=\(address)", "--print-reply", "--reply-timeout=15000",
         "--dest=\(Self.serviceName)", "/org/kusu/PolkitTest", "org.kusu.PolkitTest.\(member)"] + arguments
    }

    /// dbus-send reports "Error org.freedesktop.DBus.Error.X: message" on stderr.
    static func errorLine(_ output: String) -> String {
        let line = output.split(separator: "\n").first { $0.hasPrefix("Error ") } ?? Substring(output)
        return String(line.dropFirst(line.hasPrefix("Error ") ? 6 : 0))
    }

    static func gid(of user: String) throws -> gid_t {
        guard let pw = getpwnam(user) else { throw DBusError.failed("no user \(user)") }
        return pw.pointee.pw_gid
    }

    /// Makes sure the project's system user kusu-ha and group kusu-admin exist
    /// (systemd-sysusers with the project's sysusers.d file).
    static func ensureProjectUsers() throws {
        if getpwnam("kusu-ha") != nil && getgrnam("kusu-admin") != nil { return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-sysusers")
        p.arguments = [repository.appendingPathComponent("systemd/kusu-ha.sysusers").path]
        try p.run()
        p.waitUntilExit()
        guard getpwnam("kusu-ha") != nil, getgrnam("kusu-admin") != nil else {
            throw DBusError.failed("systemd-sysusers did not create kusu-ha / kusu-admin")
        }
    }
}

/// A throw-away system user in the group kusu-admin, removed by `remove()`.
final class TemporaryAdmin {
    let name = "kusu-pktest"

    init() throws {
        try PolkitFixture.ensureProjectUsers()
        if getpwnam(name) == nil {
            try Self.tool("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                                                "--groups", "kusu-admin", name])
        }
    }

    func remove() {
        try? Self.tool("/usr/sbin/userdel", [name])
    }

    private static func tool(_ path: String, _ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw DBusError.failed("\(path) \(arguments.joined(separator: " ")) exited with \(p.terminationStatus)")
        }
    }
}

/// A child process whose combined stdout/stderr is read on the event loop, so
/// the loop keeps serving the bus while the child runs.
final class Subprocess {
    let process = Process()
    private let pipe = Pipe()
    private var source: EventSource?
    private(set) var output = Data()
    private(set) var eof = false

    init(loop: EventLoop, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Our copy of the write end must go, or EOF never comes.
        try? pipe.fileHandleForWriting.close()
        let fd = pipe.fileHandleForReading.fileDescriptor
        source = try loop.addReadable(fd: fd) { [unowned self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &buffer, buffer.count)
            if n > 0 {
                output.append(contentsOf: buffer[0..<n])
            } else if n == 0 || errno != EINTR {
                eof = true
                source?.cancel()
            }
        }
    }

    /// Drives the loop until the child closed its output, then reaps it.
    func finish(_ fixture: PolkitFixture, seconds: Int = 20) throws -> (status: Int32, output: String) {
        let done = try fixture.wait(seconds: seconds) { eof }
        if !done, process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        source?.cancel()
        process.waitUntilExit()
        try #require(done, "subprocess \(process.arguments ?? []) did not finish")
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    deinit {
        source?.cancel()
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
