// unit-manager-probe — a test tool (not installed) driving Effector's UnitManager
// against the system bus (DBUS_SYSTEM_BUS_ADDRESS overrides it).
//
//   unit-manager-probe [--timeout MS] start UNIT...    start in order, stop at the first failure
//   unit-manager-probe [--timeout MS] stop UNIT...     stop in the order given
//   unit-manager-probe [--timeout MS] parallel UNIT... start all at once, one line per unit
//   unit-manager-probe states UNIT...                  print "UNIT STATE" lines
//   unit-manager-probe [--timeout MS] watch STATE UNIT...
//                                                      print "watching", then "UNIT STATE" on each
//                                                      change, until a unit reaches STATE
//
// Success prints "ok start UNIT... (N ms)" and exits 0. Failure prints one line
// "error CODE UNIT [RESULT]: MESSAGE" on stderr and exits 1 (jobFailed),
// 2 (noSuchUnit), 3 (timeout), 4 (busError); 64 for usage errors.
import DBusKit
import Effector
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

func writeLine(_ fd: Int32, _ s: String) {
    let line = s + "\n"
    _ = line.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
}

func usage() -> Never {
    writeLine(2, "usage: unit-manager-probe [--timeout MS] start|stop|parallel|states UNIT... | watch STATE UNIT...")
    exit(64)
}

func milliseconds(_ d: Duration) -> Int64 {
    d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
}

/// Runs the probe; returns the exit status.
func probe(_ arguments: [String]) -> Int32 {
    var args = arguments
    var timeout = Duration.seconds(30)
    if args.first == "--timeout" {
        guard args.count >= 2, let ms = Int64(args[1]), ms > 0 else { usage() }
        timeout = .milliseconds(ms)
        args.removeFirst(2)
    }
    guard let command = args.first else { usage() }
    var units = Array(args.dropFirst())

    let loop: EventLoop
    let bus: BusConnection
    do {
        loop = try EventLoop()
        bus = try BusConnection.system(on: loop)
    } catch {
        writeLine(2, "error busError -: cannot connect to the system bus: \(error)")
        return 4
    }
    let manager = UnitManager(bus: bus)
    let clock = ContinuousClock()
    let started = clock.now
    final class Outcome { var exitCode: Int32? }
    let outcome = Outcome()

    func report(_ verb: String, _ result: Result<Void, UnitError>) {
        switch result {
        case .success:
            writeLine(1, "ok \(verb) \(units.joined(separator: " ")) (\(milliseconds(clock.now - started)) ms)")
            outcome.exitCode = 0
        case .failure(let e):
            let code: (String, Int32) = switch e.code {
            case .jobFailed: ("jobFailed", 1)
            case .noSuchUnit: ("noSuchUnit", 2)
            case .timeout: ("timeout", 3)
            case .busError: ("busError", 4)
            }
            writeLine(2, "error \(code.0) \(e.unit)\(e.result.map { " " + $0 } ?? ""): \(e.message) (\(milliseconds(clock.now - started)) ms)")
            outcome.exitCode = code.1
        }
    }

    switch command {
    case "start":
        guard !units.isEmpty else { usage() }
        manager.start(units, timeout: timeout) { report("start", $0) }
    case "stop":
        guard !units.isEmpty else { usage() }
        manager.stop(units, timeout: timeout) { report("stop", $0) }
    case "parallel":
        // Every start at once: exercises several outstanding jobs on one connection.
        guard !units.isEmpty else { usage() }
        var remaining = units.count
        var failures: [Int32] = []
        for unit in units {
            manager.start(unit, timeout: timeout) { result in
                switch result {
                case .success: writeLine(1, "ok start \(unit) (\(milliseconds(clock.now - started)) ms)")
                case .failure:
                    let saved = outcome.exitCode
                    report("start", result)
                    failures.append(outcome.exitCode ?? 1)
                    outcome.exitCode = saved
                }
                remaining -= 1
                if remaining == 0 { outcome.exitCode = failures.max() ?? 0 }
            }
        }
    case "states":
        guard !units.isEmpty else { usage() }
        manager.activeStates(units) { states in
            for unit in units { writeLine(1, "\(unit) \(states[unit] ?? "unknown")") }
            outcome.exitCode = 0
        }
    case "watch":
        guard units.count >= 2 else { usage() }
        let target = units.removeFirst()
        do {
            try manager.watch(units) { unit, state in
                writeLine(1, "\(unit) \(state)")
                if state == target { outcome.exitCode = 0 }
            }
        } catch {
            writeLine(2, "error busError -: \(error)")
            return 4
        }
        // Tell the caller the subscription is in place (after Subscribe's reply).
        manager.activeStates(units) { _ in writeLine(1, "watching") }
    default:
        usage()
    }

    let deadline = loop.now + timeout + .seconds(5)
    do {
        _ = try loop.run(until: deadline) { outcome.exitCode != nil }
    } catch {
        writeLine(2, "error busError -: event loop: \(error)")
        return 4
    }
    guard let exitCode = outcome.exitCode else {
        writeLine(2, "error timeout -: no answer within \(milliseconds(timeout)) ms")
        return 3
    }
    return exitCode
}

exit(probe(Array(CommandLine.arguments.dropFirst())))
