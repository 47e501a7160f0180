#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system or libsystemd call, e.g. "sd_event_new: Cannot allocate memory".
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32

    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// From a libsystemd return value (a negative errno).
    init(_ operation: String, returned r: Int32) {
        self.init(operation: operation, errno: r < 0 ? -r : r)
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno)))"
    }
}

/// Duration ↔ microseconds (the unit of sd-event and sd-bus).
enum Microseconds {
    /// `UINT64_MAX` is `USEC_INFINITY` for libsystemd; finite values saturate one below it.
    static let maxFinite: UInt64 = UInt64.max - 1

    /// Converts a duration to microseconds, rounding up to the next microsecond
    /// (a timer never fires early), clamping negatives to 0 and saturating at
    /// `maxFinite` instead of overflowing.
    static func from(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) {
            // Duration's components keep the sign on both parts; anything ≤ 0 is 0.
            return 0
        }
        // attoseconds is in 0..<1e18 for positive durations.
        let attoPerMicro: Int64 = 1_000_000_000_000
        var micros = UInt64(attoseconds / attoPerMicro)
        if attoseconds % attoPerMicro != 0 { micros += 1 }
        let (secMicros, overflow1) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000)
        if overflow1 { return maxFinite }
        let (total, overflow2) = secMicros.addingReportingOverflow(micros)
        if overflow2 || total > maxFinite { return maxFinite }
        return total
    }

    static func duration(_ usec: UInt64) -> Duration {
        .seconds(Int64(usec / 1_000_000)) + .microseconds(Int64(usec % 1_000_000))
    }
}
