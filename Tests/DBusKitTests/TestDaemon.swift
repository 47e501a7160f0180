import DBusKit
import Foundation
import Testing

/// A private dbus-daemon for one test, killed (by the PID we started) in `stop()`.
final class TestDaemon {
    static let available = FileManager.default.isExecutableFile(atPath: "/usr/bin/dbus-daemon")

    let process = Process()
    let directory: URL
    let address: String

    init() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("dbuskit-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>session</type>
              <listen>unix:path=\(directory.path)/bus</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
                <allow send_destination="*" eavesdrop="true"/>
                <allow eavesdrop="true"/>
                <allow own="*"/>
                <deny own="org.kusu.Forbidden"/>
              </policy>
            </busconfig>
            """
        let configURL = directory.appendingPathComponent("bus.conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/dbus-daemon")
        process.arguments = ["--config-file=\(configURL.path)", "--nofork", "--print-address=1"]
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var data = Data()
        while !data.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            data.append(chunk)
        }
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        guard !line.isEmpty else {
            process.terminate()
            process.waitUntilExit()
            throw DBusError.failed("dbus-daemon printed no address")
        }
        address = line
    }

    func stop() {
        if process.isRunning {
            // SIGKILL: the daemon inherits the test thread's signal mask, where SIGTERM is blocked.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

/// A daemon, a loop, and two connections ("server" and "client") on that loop.
struct BusFixture {
    let daemon: TestDaemon
    let loop: EventLoop
    let server: BusConnection
    let client: BusConnection

    init() throws {
        daemon = try TestDaemon()
        loop = try EventLoop()
        server = try BusConnection(address: daemon.address, on: loop)
        client = try BusConnection(address: daemon.address, on: loop)
    }

    /// Drives the loop until `condition` holds, for at most 5 s.
    @discardableResult
    func wait(_ condition: () -> Bool) throws -> Bool {
        try loop.run(until: loop.now + .seconds(5), condition)
    }

    /// Runs an async call on the client and waits for its result.
    func call(_ destination: BusName, _ path: ObjectPath, _ interface: InterfaceName, _ member: MemberName,
              _ arguments: [Value] = [], timeout: Duration = .seconds(5)) throws -> Result<[Value], DBusError> {
        var result: Result<[Value], DBusError>?
        try client.call(destination: destination, path: path, interface: interface, member: member, arguments,
                        timeout: timeout) { result = $0 }
        try #require(try wait { result != nil })
        return result!
    }
}
