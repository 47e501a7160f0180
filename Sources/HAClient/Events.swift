// `kusu-ha watch`: the match rules it installs and one line per received signal.
public import DBusKit
import ClusterAPI

public enum Events {
    static let properties = "org.freedesktop.DBus.Properties"

    /// The match rules: both services' own signals, their PropertiesChanged, and
    /// their bus names coming and going.
    public static var matchRules: [String] {
        var rules: [String] = []
        for s in Service.allCases {
            rules.append("type='signal',path='\(s.objectPath)',interface='\(s.interface)'")
            rules.append("type='signal',path='\(s.objectPath)',interface='\(properties)',member='PropertiesChanged',arg0='\(s.interface)'")
            rules.append("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='\(s.busName)'")
        }
        return rules
    }

    /// One line (without timestamp) for a received signal, nil for anything else.
    public static func describe(_ m: SignalMessage) -> String? {
        describe(path: m.path, interface: m.interface, member: m.member, arguments: m.arguments)
    }

    public static func describe(path: String, interface: String, member: String, arguments a: [Value]) -> String? {
        if member == "NameOwnerChanged", a.count == 3, let name = a[0].string,
           let service = Service.allCases.first(where: { $0.busName == name }) {
            let old = a[1].string ?? "", new = a[2].string ?? ""
            if new.isEmpty { return "\(service.daemon): stopped (left the bus)" }
            if old.isEmpty { return "\(service.daemon): started (\(new))" }
            return "\(service.daemon): replaced (\(new))"
        }
        guard let service = Service.allCases.first(where: { $0.objectPath == path }) else { return nil }
        let who = service.daemon
        switch (interface, member) {
        case (Heartbeat1.interface, Heartbeat1.Signal.peerStateChanged) where a.count == 3:
            return "\(who): peer \(brief(a[0])) \(brief(a[1])) -> \(brief(a[2]))"
        case (Heartbeat1.interface, Heartbeat1.Signal.roleChanged) where a.count == 3:
            return "\(who): role \(brief(a[0])) -> \(brief(a[1])) (\(a[2].string ?? brief(a[2])))"
        case (properties, "PropertiesChanged") where a.count >= 2:
            var parts = (a[1].stringKeyedDictionary ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\(brief($0.value))" }
            if a.count >= 3, let invalidated = a[2].array?.compactMap(\.string), !invalidated.isEmpty {
                parts.append(contentsOf: invalidated.map { "\($0) changed" })
            }
            return "\(who): " + (parts.isEmpty ? "properties changed" : parts.joined(separator: " "))
        default:
            return "\(who): \(member)(\(a.map(brief).joined(separator: ", ")))"
        }
    }

    /// A short human form of a value: strings bare, arrays in [], structs in ().
    public static func brief(_ v: Value) -> String {
        switch v {
        case .string(let s): return s.contains(" ") || s.isEmpty ? "\"\(s)\"" : s
        case .boolean(let b): return b ? "true" : "false"
        case .byte(let n): return String(n)
        case .int16(let n): return String(n)
        case .uint16(let n): return String(n)
        case .int32(let n): return String(n)
        case .uint32(let n): return String(n)
        case .int64(let n): return String(n)
        case .uint64(let n): return String(n)
        case .double(let d): return String(d)
        case .objectPath(let p): return p.rawValue
        case .signature(let s): return s.rawValue
        case .array(_, let xs): return "[" + xs.map(brief).joined(separator: ", ") + "]"
        case .dictionary(_, _, let es): return "{" + es.map { "\(brief($0.key)): \(brief($0.value))" }.joined(separator: ", ") + "}"
        case .structure(let fs): return "(" + fs.map(brief).joined(separator: " ") + ")"
        case .variant(let inner): return brief(inner)
        }
    }
}
