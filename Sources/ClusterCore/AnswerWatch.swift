/// Whether something probed periodically still answers: it does while one of its probes
/// succeeded within the last `timeout`. A probe that hangs is not waited for: the verdict
/// turns at `lastAnswer + timeout` whatever the probe does, so a hung server is seen as
/// unhealthy within the timeout, and one that refuses (each probe fails at once) too.
/// Pure: the shell passes the instants (the effector's database health query).
public struct AnswerWatch: Sendable, Equatable {
    public let timeout: Duration
    /// The last successful answer (at first: the start, a grace of one timeout).
    public private(set) var lastAnswer: MonotonicInstant
    /// Why the last probe failed (nil: it succeeded, or none failed since).
    public private(set) var lastError: String?
    /// A probe started and has not returned.
    public private(set) var pendingSince: MonotonicInstant?

    public init(timeout: Duration, start: MonotonicInstant) {
        self.timeout = timeout
        lastAnswer = start
    }

    public mutating func began(at now: MonotonicInstant) { pendingSince = now }

    /// The probe returned a good answer. It counts from when it was asked: a server that
    /// needs longer than the timeout for every answer stays unhealthy.
    public mutating func answered(at now: MonotonicInstant) {
        lastAnswer = max(lastAnswer, pendingSince ?? now)
        pendingSince = nil
        lastError = nil
    }

    public mutating func failed(_ error: String, at now: MonotonicInstant) {
        pendingSince = nil
        lastError = error
    }

    /// What is probed was (re)started on purpose: it gets a fresh grace of one timeout, as at
    /// the start (a database the takeover just started is not unhealthy for having been down).
    public mutating func restarted(at now: MonotonicInstant) {
        lastAnswer = max(lastAnswer, now)
        lastError = nil
    }

    public func answering(at now: MonotonicInstant) -> Bool { now - lastAnswer < timeout }

    /// When the verdict turns if nothing answers.
    public var deadline: MonotonicInstant { lastAnswer + timeout }

    /// Why it is not answering, in words that do not change while the cause does not ("" when
    /// answering): the last error, or that a query has not returned.
    public func detail(at now: MonotonicInstant) -> String {
        guard !answering(at: now) else { return "" }
        let limit = "no answer within \(Self.seconds(timeout))"
        if pendingSince != nil { return "\(limit): a query has not returned (the server may be hung)" }
        if let lastError { return "\(limit): \(lastError)" }
        return limit
    }

    /// "3.0 s", "0.5 s".
    static func seconds(_ duration: Duration) -> String {
        let tenths = duration.wholeMilliseconds / 100
        return "\(tenths / 10).\(tenths % 10) s"
    }
}
