// Logging to the systemd journal with structured fields.
//
// Under systemd (JOURNAL_STREAM set) each record goes to journald through
// sd_journal_sendv(3), so swift-log metadata becomes journal fields:
// `peer.state` → PEER_STATE, `message.id` → MESSAGE_ID (for the catalog).
// Elsewhere (a terminal, a test) records go to stderr as one line each.
import CSystemd
import Glibc
public import Logging

public struct JournalLogHandler: LogHandler {
    public enum Sink: Sendable { case journal, standardError }

    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    private let label: String
    private let sink: Sink

    public init(label: String, sink: Sink? = nil) {
        self.label = label
        self.sink = sink ?? (getenv("JOURNAL_STREAM") != nil ? .journal : .standardError)
    }

    /// Bootstraps swift-log once for an executable. Level from `KUSU_HA_LOG_LEVEL` (trace…critical).
    public static func bootstrap(defaultLevel: Logger.Level = .info) {
        let level = getenv("KUSU_HA_LOG_LEVEL").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? defaultLevel
        LoggingSystem.bootstrap { label in
            var handler = JournalLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        switch sink {
        case .journal: sendToJournal(event, merged)
        case .standardError: writeToStandardError(event, merged)
        }
    }

    private func sendToJournal(_ event: LogEvent, _ metadata: Logger.Metadata) {
        var fields: [String] = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.syslogPriority(event.level))",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
            "LOGGER=\(label)",
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            guard let name = Self.journalFieldName(key) else { continue }
            fields.append("\(name)=\(value)")
        }
        // One buffer holds every field; one iovec points at each.
        var storage: [UInt8] = []
        var spans: [(offset: Int, length: Int)] = []
        for field in fields {
            spans.append((storage.count, field.utf8.count))
            storage.append(contentsOf: field.utf8)
        }
        storage.withUnsafeMutableBytes { raw in
            var vectors = spans.map { iovec(iov_base: raw.baseAddress! + $0.offset, iov_len: $0.length) }
            _ = sd_journal_sendv(&vectors, Int32(vectors.count))
        }
    }

    private func writeToStandardError(_ event: LogEvent, _ metadata: Logger.Metadata) {
        var line = "\(event.level): \(event.message)"
        if !metadata.isEmpty {
            line += " " + metadata.sorted(by: { $0.key < $1.key }).map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        line += "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(2, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                offset += n
            }
        }
    }

    /// syslog(3) priority of a swift-log level; `notice` is used for role transitions.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Journal field names are A–Z, 0–9 and `_`, not starting with `_` or a digit, at most 64 bytes.
    /// `peer.state` becomes `PEER_STATE`; a key that cannot be made valid is dropped.
    static func journalFieldName(_ key: String) -> String? {
        var name = ""
        for scalar in key.unicodeScalars {
            switch scalar {
            case "a"..."z": name.unicodeScalars.append(Unicode.Scalar(scalar.value - 32)!)
            case "A"..."Z", "0"..."9", "_": name.unicodeScalars.append(scalar)
            case ".", "-": name.append("_")
            default: return nil
            }
        }
        guard let first = name.unicodeScalars.first, first != "_", !("0"..."9").contains(first), name.utf8.count <= 64
        else { return nil }
        return name
    }
}
