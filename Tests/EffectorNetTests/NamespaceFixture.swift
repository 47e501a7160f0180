// Test plumbing: two network namespaces joined by a veth pair, commands through `ip`, and
// running code inside a namespace on a dedicated pthread (setns is per thread; never done on a
// Swift concurrency pool thread).
import CNetlink
import Foundation
import Glibc
import Testing

let runsAsRootWithIP = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")

struct CommandFailed: Error, CustomStringConvertible {
    var description: String
}

/// Runs a command, returns its standard output; throws with its standard error if it fails.
@discardableResult
func run(_ arguments: String...) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(description: "\(arguments.joined(separator: " ")): exit \(process.terminationStatus): "
                                + String(decoding: err, as: UTF8.self))
    }
    return String(decoding: out, as: UTF8.self)
}

private final class ThreadWork: @unchecked Sendable {
    let work: () -> Void
    init(_ work: @escaping () -> Void) { self.work = work }
}

struct NamespaceError: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body` on a new pthread that first joins network namespace `name`, and waits for it.
/// Sockets opened in `body` stay in that namespace wherever they are used afterwards.
func inNamespace<T>(_ name: String, _ body: () throws -> T) throws -> T {
    try withoutActuallyEscaping(body) { body in
        var result: Result<T, any Error>?
        let work = ThreadWork {
            let fd = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                result = .failure(NamespaceError(description: "open /run/netns/\(name): errno \(errno)"))
                return
            }
            defer { close(fd) }
            guard cnl_enter_network_namespace(fd) == 0 else {
                result = .failure(NamespaceError(description: "setns \(name): errno \(errno)"))
                return
            }
            result = Result { try body() }
        }
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<ThreadWork>.fromOpaque(context!).takeRetainedValue().work()
            return nil
        }, Unmanaged.passRetained(work).toOpaque())
        guard created == 0 else { throw NamespaceError(description: "pthread_create: \(created)") }
        pthread_join(thread, nil)
        guard let result else { throw NamespaceError(description: "namespace thread produced nothing") }
        return try result.get()
    }
}

/// Namespaces A and B, veth `vha` (in A, MAC macA, 198.18.0.1/24, 2001:2::1/64) to `vhb` (in B,
/// MAC macB, 198.18.0.2/24, 2001:2::2/64). DAD is off in both. Deleted by `destroy()`.
final class TwoNamespaces {
    private nonisolated(unsafe) static var counter = 0
    private static let lock = NSLock()

    let a: String
    let b: String
    let interfaceA = "vha"
    let interfaceB = "vhb"
    let macA = "02:4b:48:00:00:0a"
    let macB = "02:4b:48:00:00:0b"

    init() throws {
        let n = Self.lock.withLock { Self.counter += 1; return Self.counter }
        a = "khnet-\(getpid())-\(n)-a"
        b = "khnet-\(getpid())-\(n)-b"
        do {
            for ns in [a, b] {
                try run("/usr/sbin/ip", "netns", "add", ns)
                try run("/usr/sbin/ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
                try run("/usr/sbin/ip", "-n", ns, "link", "set", "lo", "up")
            }
            try run("/usr/sbin/ip", "-n", a, "link", "add", interfaceA, "address", macA, "type", "veth",
                    "peer", "name", interfaceB, "netns", b, "address", macB)
            try run("/usr/sbin/ip", "-n", a, "addr", "add", "198.18.0.1/24", "dev", interfaceA)
            try run("/usr/sbin/ip", "-n", b, "addr", "add", "198.18.0.2/24", "dev", interfaceB)
            try run("/usr/sbin/ip", "-n", a, "-6", "addr", "add", "2001:2::1/64", "dev", interfaceA, "nodad")
            try run("/usr/sbin/ip", "-n", b, "-6", "addr", "add", "2001:2::2/64", "dev", interfaceB, "nodad")
            try run("/usr/sbin/ip", "-n", a, "link", "set", interfaceA, "up")
            try run("/usr/sbin/ip", "-n", b, "link", "set", interfaceB, "up")
            // IPv6 on a veth is configured only once the carrier change has been processed (up to
            // a second later, linkwatch): until then there is no ff00::/8 route and multicast such
            // as a neighbour advertisement is dropped. Wait for both ends.
            for (ns, interface) in [(a, interfaceA), (b, interfaceB)] {
                let ready = try eventually {
                    try run("/usr/sbin/ip", "-n", ns, "-6", "route", "show", "table", "local", "dev", interface)
                        .contains("multicast ff00::/8")
                }
                guard ready else { throw NamespaceError(description: "IPv6 never came up on \(interface) in \(ns)") }
            }
        } catch {
            destroy()
            throw error
        }
    }

    func destroy() {
        for ns in [a, b] { _ = try? run("/usr/sbin/ip", "netns", "del", ns) }
    }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// A packet socket bound to `interface` in the calling thread's namespace, receiving EtherType
/// `etherType` (full Ethernet frames), 100 ms receive timeout.
func openCapture(interface: String, etherType: Int32) throws -> Int32 {
    let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(UInt16(etherType).bigEndian))
    guard fd >= 0 else { throw NamespaceError(description: "packet socket: errno \(errno)") }
    var address = sockaddr_ll()
    address.sll_family = UInt16(AF_PACKET)
    address.sll_protocol = UInt16(etherType).bigEndian
    address.sll_ifindex = Int32(if_nametoindex(interface))
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
    }
    guard bound == 0 else { close(fd); throw NamespaceError(description: "bind packet socket: errno \(errno)") }
    var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Frames read from a capture socket until `done` says enough or `seconds` pass.
func captureFrames(_ fd: Int32, within seconds: Double = 5, until done: ([[UInt8]]) -> Bool) -> [[UInt8]] {
    var frames: [[UInt8]] = []
    let deadline = Date().addingTimeInterval(seconds)
    var buffer = [UInt8](repeating: 0, count: 2048)
    while Date() < deadline, !done(frames) {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { frames.append(Array(buffer[0..<n])) }
    }
    return frames
}

func macBytes(_ text: String) -> [UInt8] {
    text.split(separator: ":").map { UInt8($0, radix: 16)! }
}
