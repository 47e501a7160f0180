/// An instant on a monotonic clock, as the time elapsed since an arbitrary origin.
///
/// Every timing decision in ``ClusterCore`` uses `MonotonicInstant`: the shell reads
/// `CLOCK_MONOTONIC` (or `CLOCK_BOOTTIME`) and hands the value in, and tests drive a
/// virtual clock. Wall-clock time (`CLOCK_REALTIME`, in µs) is only ever passed in to be
/// published, never compared.
public struct MonotonicInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The time elapsed since the clock's origin.
    public var sinceOrigin: Duration

    public init(_ sinceOrigin: Duration) {
        self.sinceOrigin = sinceOrigin
    }

    /// The clock's origin.
    public static let origin = MonotonicInstant(.zero)

    public static func < (lhs: MonotonicInstant, rhs: MonotonicInstant) -> Bool {
        lhs.sinceOrigin < rhs.sinceOrigin
    }

    public static func + (lhs: MonotonicInstant, rhs: Duration) -> MonotonicInstant {
        MonotonicInstant(lhs.sinceOrigin + rhs)
    }

    public static func - (lhs: MonotonicInstant, rhs: Duration) -> MonotonicInstant {
        MonotonicInstant(lhs.sinceOrigin - rhs)
    }

    public static func - (lhs: MonotonicInstant, rhs: MonotonicInstant) -> Duration {
        lhs.sinceOrigin - rhs.sinceOrigin
    }

    public var description: String { "T+\(sinceOrigin)" }
}

extension Duration {
    /// Whole milliseconds (truncated toward zero): for messages, log fields and C calls that take ms.
    public var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
