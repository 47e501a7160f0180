/// An IPv4 or IPv6 address, parsed by a small pure-Swift parser (no `inet_pton`, no zone ids).
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt8, UInt8, UInt8, UInt8)
    /// The 128 bits of an IPv6 address, most significant half first.
    case v6(high: UInt64, low: UInt64)

    /// Parses an IPv4 dotted quad (strictly: four decimal parts 0...255, no leading zeros)
    /// or an IPv6 address (RFC 4291 text form, with `::` compression and an optional trailing
    /// dotted quad). Zone ids (`%eth0`) are refused.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        if let v4 = IPAddress.parseIPv4(utf8[...]) {
            self = .v4(v4[0], v4[1], v4[2], v4[3])
        } else if let v6 = IPAddress.parseIPv6(utf8) {
            self.init(bytes: v6)!
        } else {
            return nil
        }
    }

    /// An address from its network-order bytes: 4 for IPv4, 16 for IPv6; `nil` otherwise.
    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4:
            self = .v4(bytes[0], bytes[1], bytes[2], bytes[3])
        case 16:
            var high: UInt64 = 0
            var low: UInt64 = 0
            for i in 0..<8 {
                high = high << 8 | UInt64(bytes[i])
                low = low << 8 | UInt64(bytes[i + 8])
            }
            self = .v6(high: high, low: low)
        default:
            return nil
        }
    }

    /// The address in network byte order: 4 bytes for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case let .v4(a, b, c, d):
            return [a, b, c, d]
        case let .v6(high, low):
            var result: [UInt8] = []
            result.reserveCapacity(16)
            for shift in stride(from: 56, through: 0, by: -8) { result.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { result.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
            return result
        }
    }

    public var isIPv4: Bool {
        if case .v4 = self { return true }
        return false
    }

    /// The largest prefix length for this family: 32 or 128.
    public var maximumPrefixLength: Int { isIPv4 ? 32 : 128 }

    /// `0.0.0.0` or `::`.
    public var isUnspecified: Bool { bytes.allSatisfy { $0 == 0 } }

    /// The canonical text form: dotted quad for IPv4, RFC 5952 for IPv6 (lower case, the
    /// longest run of two or more zero groups compressed, IPv4-mapped addresses as
    /// `::ffff:a.b.c.d`).
    public var description: String {
        switch self {
        case let .v4(a, b, c, d):
            return "\(a).\(b).\(c).\(d)"
        case .v6:
            let b = bytes
            let groups = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
            if groups[0..<5].allSatisfy({ $0 == 0 }) && groups[5] == 0xFFFF {
                return "::ffff:\(b[12]).\(b[13]).\(b[14]).\(b[15])"
            }
            // Longest run of zero groups (length >= 2), the first one on a tie.
            var bestStart = -1
            var bestLength = 1
            var i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8 && groups[j] == 0 { j += 1 }
                    if j - i > bestLength {
                        bestStart = i
                        bestLength = j - i
                    }
                    i = j
                } else {
                    i += 1
                }
            }
            func hex(_ range: Range<Int>) -> String {
                range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
            }
            if bestStart < 0 { return hex(0..<8) }
            return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
        }
    }

    // MARK: - Parsing

    private static let dot = UInt8(ascii: ".")
    private static let colon = UInt8(ascii: ":")

    /// Four decimal parts 0...255 separated by dots; no leading zeros, no signs, no spaces.
    static func parseIPv4(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        let parts = text.split(separator: dot, omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var result: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            if part.count > 1 && part.first == 0x30 { return nil }
            let value = part.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard value <= 255 else { return nil }
            result.append(UInt8(value))
        }
        return result
    }

    private static func hexValue(_ c: UInt8) -> UInt16? {
        switch c {
        case 0x30...0x39: UInt16(c - 0x30)
        case 0x41...0x46: UInt16(c - 0x41 + 10)
        case 0x61...0x66: UInt16(c - 0x61 + 10)
        default: nil
        }
    }

    /// RFC 4291 section 2.2 text forms; returns 16 bytes.
    static func parseIPv6(_ text: [UInt8]) -> [UInt8]? {
        guard text.count >= 2, text.count <= 45 else { return nil }
        // Split around the single allowed "::".
        var doubleColon: Int?
        var i = 0
        while i + 1 < text.count {
            if text[i] == colon && text[i + 1] == colon {
                guard doubleColon == nil else { return nil }
                doubleColon = i
                i += 2
            } else {
                i += 1
            }
        }
        func groups(_ part: ArraySlice<UInt8>, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let fields = part.split(separator: colon, omittingEmptySubsequences: false)
            var result: [UInt16] = []
            for (index, field) in fields.enumerated() {
                if allowIPv4Tail && index == fields.count - 1 && field.contains(dot) {
                    guard let quad = parseIPv4(field) else { return nil }
                    result.append(UInt16(quad[0]) << 8 | UInt16(quad[1]))
                    result.append(UInt16(quad[2]) << 8 | UInt16(quad[3]))
                    continue
                }
                guard (1...4).contains(field.count) else { return nil }
                var value: UInt16 = 0
                for c in field {
                    guard let digit = hexValue(c) else { return nil }
                    value = value << 4 | digit
                }
                result.append(value)
            }
            return result
        }
        var all: [UInt16]
        if let dc = doubleColon {
            guard let head = groups(text[..<dc], allowIPv4Tail: false),
                let tail = groups(text[(dc + 2)...], allowIPv4Tail: true),
                head.count + tail.count <= 7
            else { return nil }
            all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let g = groups(text[...], allowIPv4Tail: true), g.count == 8 else { return nil }
            all = g
        }
        return all.flatMap { [UInt8(truncatingIfNeeded: $0 >> 8), UInt8(truncatingIfNeeded: $0)] }
    }
}
