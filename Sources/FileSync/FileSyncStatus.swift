// What the puller last did with each tree, as kept in /run/kusu-ha-sync/status: written by
// kusu-ha-sync.service, read by `kusu-ha sync status` and by kusu-hbd (to publish it).
//
// The file is text, one line per tree after a version line; fields are separated by a TAB,
// and TAB, line breaks and backslashes inside a field are escaped as \t, \n, \r and \\:
//
//   kusu-ha-sync-status 1
//   tree<TAB>PATH<TAB>STATE<TAB>LAST_SUCCESS_USEC<TAB>LAST_ATTEMPT_USEC<TAB>SINCE_USEC<TAB>MESSAGE
//
// Times are CLOCK_REALTIME microseconds, 0 = never. Unknown line kinds are skipped (a newer
// puller may add some); a known line that does not parse makes the whole file invalid.

/// One tree's line.
public struct TreeStatus: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable {
        /// Pulled, but not yet (the puller has just started).
        case pending
        /// The last pull succeeded.
        case synchronised
        /// The last pull failed; `message` says why.
        case failed
        /// Not pulled now; `message` says why ("this node is active: ...").
        case paused
        /// `pull = false` on this node.
        case notPulled = "not-pulled"
    }

    /// The tree, as in `[[sync]] path`.
    public var path: String
    public var state: State
    /// When the last successful pull began (the copy is at least as new as the active node's
    /// tree at that time); 0 = never.
    public var lastSuccessUSec: UInt64
    /// When the last pull, successful or not, began; 0 = never.
    public var lastAttemptUSec: UInt64
    /// When the tree entered its current state and message.
    public var sinceUSec: UInt64
    /// The error of a failed pull or the reason of a pause; empty otherwise.
    public var message: String

    public init(path: String, state: State, lastSuccessUSec: UInt64 = 0, lastAttemptUSec: UInt64 = 0,
                sinceUSec: UInt64 = 0, message: String = "") {
        self.path = path
        self.state = state
        self.lastSuccessUSec = lastSuccessUSec
        self.lastAttemptUSec = lastAttemptUSec
        self.sinceUSec = sinceUSec
        self.message = message
    }

    /// Whether the last pull succeeded.
    public var ok: Bool { state == .synchronised }

    /// Moves to `state` with `message` at `now`; `since` changes only when either changes.
    public mutating func enter(_ state: State, message: String = "", at now: UInt64) {
        if state != self.state || message != self.message { sinceUSec = now }
        self.state = state
        self.message = message
    }

    /// A pull that began at `started` succeeded.
    public mutating func recordSuccess(started: UInt64, at now: UInt64) {
        lastSuccessUSec = started
        lastAttemptUSec = started
        enter(.synchronised, at: now)
    }

    /// A pull that began at `started` failed with `error`.
    public mutating func recordFailure(_ error: String, started: UInt64, at now: UInt64) {
        lastAttemptUSec = started
        enter(.failed, message: error, at: now)
    }

    /// The state in words, ages relative to `now`:
    /// "synchronised 12 s ago", "failed 3 s ago: ERROR; last synchronised 2 min ago",
    /// "paused: REASON; last synchronised 1 h 5 min ago", "not synchronised yet".
    public func describe(now: UInt64) -> String {
        let last = lastSuccessUSec == 0 ? "never synchronised" : "last synchronised \(Self.age(since: lastSuccessUSec, now: now))"
        switch state {
        case .synchronised:
            return "synchronised \(Self.age(since: lastSuccessUSec, now: now))"
        case .failed:
            return "failed \(Self.age(since: lastAttemptUSec, now: now)): \(message); \(last)"
        case .paused:
            return "paused: \(message); \(last)"
        case .pending:
            return lastSuccessUSec == 0 ? "not synchronised yet" : "pulling soon; \(last)"
        case .notPulled:
            return "not pulled here (pull = false)" + (lastSuccessUSec == 0 ? "" : "; \(last)")
        }
    }

    /// "12 s ago", "5 min ago", "2 h 3 min ago", "3 d 4 h ago"; "just now" under a second,
    /// "in the future" when the clock went back.
    public static func age(since then: UInt64, now: UInt64) -> String {
        guard now >= then else { return "in the future" }
        let seconds = (now - then) / 1_000_000
        if seconds == 0 { return "just now" }
        if seconds < 60 { return "\(seconds) s ago" }
        let minutes = seconds / 60
        if minutes < 60 { return "\(minutes) min ago" }
        let hours = minutes / 60
        if hours < 24 { return minutes % 60 == 0 ? "\(hours) h ago" : "\(hours) h \(minutes % 60) min ago" }
        let days = hours / 24
        return hours % 24 == 0 ? "\(days) d ago" : "\(days) d \(hours % 24) h ago"
    }
}

/// The whole status file.
public struct FileSyncStatus: Sendable, Equatable {
    public static let header = "kusu-ha-sync-status 1"

    public var trees: [TreeStatus]

    public init(trees: [TreeStatus] = []) {
        self.trees = trees
    }

    /// The tree with this path, if listed.
    public subscript(path: String) -> TreeStatus? {
        trees.first { $0.path == path }
    }

    /// The file's text.
    public var encoded: String {
        var text = Self.header + "\n"
        for tree in trees {
            let fields = [
                "tree", Self.escape(tree.path), tree.state.rawValue, String(tree.lastSuccessUSec),
                String(tree.lastAttemptUSec), String(tree.sinceUSec), Self.escape(tree.message),
            ]
            text += fields.joined(separator: "\t") + "\n"
        }
        return text
    }

    /// Parses the file's text; `file` only names it in errors.
    public init(decoding text: String, file: String = FileSyncPaths.statusFile) throws(FileSyncStatusError) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        guard let first = lines.first else { throw FileSyncStatusError(file: file, line: nil, reason: "the file is empty") }
        guard first == Self.header else {
            if first.hasPrefix("kusu-ha-sync-status ") {
                throw FileSyncStatusError(file: file, line: 1, reason: "version \"\(first.dropFirst(20))\" is not supported (this kusu-ha reads version 1)")
            }
            throw FileSyncStatusError(file: file, line: 1, reason: "not a kusu-ha sync status file (the first line is not \"\(Self.header)\")")
        }
        var trees: [TreeStatus] = []
        for (offset, line) in lines.enumerated().dropFirst() {
            let number = offset + 1
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.first == "tree" else { continue }
            guard fields.count == 7 else {
                throw FileSyncStatusError(file: file, line: number, reason: "a tree line has 7 fields, this one \(fields.count)")
            }
            let path = try Self.unescape(fields[1], file: file, line: number)
            guard path.hasPrefix("/") else {
                throw FileSyncStatusError(file: file, line: number, reason: "the path \(path.debugDescription) is not absolute")
            }
            guard let state = TreeStatus.State(rawValue: String(fields[2])) else {
                throw FileSyncStatusError(file: file, line: number, reason: "unknown state \(String(fields[2]).debugDescription)")
            }
            var times: [UInt64] = []
            for (name, field) in zip(["last success", "last attempt", "since"], fields[3...5]) {
                guard let value = UInt64(field) else {
                    throw FileSyncStatusError(file: file, line: number, reason: "the \(name) time \(String(field).debugDescription) is not a number of microseconds")
                }
                times.append(value)
            }
            let message = try Self.unescape(fields[6], file: file, line: number)
            trees.append(TreeStatus(path: path, state: state, lastSuccessUSec: times[0], lastAttemptUSec: times[1],
                                    sinceUSec: times[2], message: message))
        }
        self.init(trees: trees)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func unescape(_ field: Substring, file: String, line: Int) throws(FileSyncStatusError) -> String {
        var out = ""
        var escaping = false
        for scalar in field.unicodeScalars {
            if escaping {
                switch scalar {
                case "\\": out += "\\"
                case "t": out += "\t"
                case "n": out += "\n"
                case "r": out += "\r"
                default: throw FileSyncStatusError(file: file, line: line, reason: "unknown escape \"\\\(scalar)\"")
                }
                escaping = false
            } else if scalar == "\\" {
                escaping = true
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        if escaping { throw FileSyncStatusError(file: file, line: line, reason: "a field ends in a lone backslash") }
        return out
    }
}

/// The status file could not be read or is not valid.
public struct FileSyncStatusError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// The line, when one is to blame.
    public var line: Int?
    public var reason: String
    /// The file does not exist: the puller (kusu-ha-sync.service) has not run since boot.
    public var missing: Bool

    public init(file: String, line: Int?, reason: String, missing: Bool = false) {
        self.file = file
        self.line = line
        self.reason = reason
        self.missing = missing
    }

    /// "FILE:LINE: reason" or "FILE: reason".
    public var description: String {
        if let line { return "\(file):\(line): \(reason)" }
        return "\(file): \(reason)"
    }
}
