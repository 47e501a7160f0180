// Validated D-Bus wire names (D-Bus specification, "Valid names" and "Signatures").

private func isAlpha(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
private func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
private let maxNameLength = 255

/// Dot-separated elements of [A-Za-z0-9_] (+ '-' if `hyphen`), at least `minElements`,
/// no element empty, no element starting with a digit unless `digitStart`.
private func validDotted(_ s: String, minElements: Int, hyphen: Bool, digitStart: Bool) -> Bool {
    let bytes = Array(s.utf8)
    guard !bytes.isEmpty, bytes.count <= maxNameLength else { return false }
    var elements = 0
    var elementLength = 0
    for c in bytes {
        if c == UInt8(ascii: ".") {
            if elementLength == 0 { return false }
            elements += 1
            elementLength = 0
            continue
        }
        let ok = isAlpha(c) || isDigit(c) || c == UInt8(ascii: "_") || (hyphen && c == UInt8(ascii: "-"))
        if !ok { return false }
        if elementLength == 0 && isDigit(c) && !digitStart { return false }
        elementLength += 1
    }
    if elementLength == 0 { return false }
    elements += 1
    return elements >= minElements
}

/// An object path: "/" or "/a/b_c/D1".
public struct ObjectPath: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ s: String) throws(DBusError) {
        guard ObjectPath.isValid(s) else { throw .invalidArgs("invalid object path: \"\(s)\"") }
        rawValue = s
    }

    init(unchecked s: String) { rawValue = s }

    /// Traps on an invalid literal.
    public init(stringLiteral value: String) {
        precondition(ObjectPath.isValid(value), "invalid object path literal \"\(value)\"")
        rawValue = value
    }

    public static func isValid(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return false }
        if bytes.count == 1 { return true }
        var elementLength = 0
        for c in bytes.dropFirst() {
            if c == UInt8(ascii: "/") {
                if elementLength == 0 { return false }
                elementLength = 0
            } else if isAlpha(c) || isDigit(c) || c == UInt8(ascii: "_") {
                elementLength += 1
            } else {
                return false
            }
        }
        return elementLength > 0
    }

    public var description: String { rawValue }
}

/// A bus name: unique (":1.42") or well-known ("org.example.Service").
public struct BusName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ s: String) throws(DBusError) {
        guard BusName.isValid(s) else { throw .invalidArgs("invalid bus name: \"\(s)\"") }
        rawValue = s
    }

    public init(stringLiteral value: String) {
        precondition(BusName.isValid(value), "invalid bus name literal \"\(value)\"")
        rawValue = value
    }

    public var isUnique: Bool { rawValue.hasPrefix(":") }

    public static func isValid(_ s: String) -> Bool {
        guard s.utf8.count <= maxNameLength else { return false }
        if s.hasPrefix(":") {
            return validDotted(String(s.dropFirst()), minElements: 2, hyphen: true, digitStart: true)
        }
        return validDotted(s, minElements: 2, hyphen: true, digitStart: false)
    }

    public var description: String { rawValue }
}

/// An interface name: "org.example.Interface".
public struct InterfaceName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ s: String) throws(DBusError) {
        guard InterfaceName.isValid(s) else { throw .invalidArgs("invalid interface name: \"\(s)\"") }
        rawValue = s
    }

    public init(stringLiteral value: String) {
        precondition(InterfaceName.isValid(value), "invalid interface name literal \"\(value)\"")
        rawValue = value
    }

    public static func isValid(_ s: String) -> Bool {
        validDotted(s, minElements: 2, hyphen: false, digitStart: false)
    }

    public var description: String { rawValue }
}

/// An error name; same rules as an interface name.
public struct ErrorName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ s: String) throws(DBusError) {
        guard InterfaceName.isValid(s) else { throw .invalidArgs("invalid error name: \"\(s)\"") }
        rawValue = s
    }

    public init(stringLiteral value: String) {
        precondition(InterfaceName.isValid(value), "invalid error name literal \"\(value)\"")
        rawValue = value
    }

    public static func isValid(_ s: String) -> Bool { InterfaceName.isValid(s) }

    public var description: String { rawValue }
}

/// A member (method, signal or property) name: "DoThing".
public struct MemberName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ s: String) throws(DBusError) {
        guard MemberName.isValid(s) else { throw .invalidArgs("invalid member name: \"\(s)\"") }
        rawValue = s
    }

    public init(stringLiteral value: String) {
        precondition(MemberName.isValid(value), "invalid member name literal \"\(value)\"")
        rawValue = value
    }

    public static func isValid(_ s: String) -> Bool {
        validDotted(s, minElements: 1, hyphen: false, digitStart: false) && !s.contains(".")
    }

    public var description: String { rawValue }
}

/// A type signature: zero or more complete types, e.g. "sa{sv}(ii)".
public struct Signature: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ s: String) throws(DBusError) {
        guard Signature.isValid(s) else { throw .invalidArgs("invalid signature: \"\(s)\"") }
        rawValue = s
    }

    init(unchecked s: String) { rawValue = s }

    /// Traps on an invalid literal.
    public init(stringLiteral value: String) {
        precondition(Signature.isValid(value), "invalid signature literal \"\(value)\"")
        rawValue = value
    }

    public var description: String { rawValue }

    /// Whether this is exactly one complete type ("a{sv}" yes, "ss" and "" no).
    public var isSingleCompleteType: Bool {
        let bytes = Array(rawValue.utf8)
        var i = 0
        guard Signature.parseComplete(bytes, &i, arrayDepth: 0, structDepth: 0) else { return false }
        return i == bytes.count
    }

    /// The complete types in this signature, in order.
    public var completeTypes: [Signature] {
        let bytes = Array(rawValue.utf8)
        var result: [Signature] = []
        var i = 0
        while i < bytes.count {
            let start = i
            guard Signature.parseComplete(bytes, &i, arrayDepth: 0, structDepth: 0) else { break }
            result.append(Signature(unchecked: String(decoding: bytes[start..<i], as: UTF8.self)))
        }
        return result
    }

    public static func isValid(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard bytes.count <= 255 else { return false }
        var i = 0
        while i < bytes.count {
            guard parseComplete(bytes, &i, arrayDepth: 0, structDepth: 0) else { return false }
        }
        return true
    }

    static let basicTypes = Set("ybnqiuxtdsogh".utf8)

    /// Parses one complete type starting at `i`, advancing `i` past it.
    static func parseComplete(_ b: [UInt8], _ i: inout Int, arrayDepth: Int, structDepth: Int) -> Bool {
        guard i < b.count else { return false }
        let c = b[i]
        if basicTypes.contains(c) || c == UInt8(ascii: "v") {
            i += 1
            return true
        }
        switch c {
        case UInt8(ascii: "a"):
            guard arrayDepth < 32 else { return false }
            i += 1
            guard i < b.count else { return false }
            if b[i] == UInt8(ascii: "{") {
                // dict entry: basic key, one complete value, '}'
                guard structDepth < 32 else { return false }
                i += 1
                guard i < b.count, basicTypes.contains(b[i]) else { return false }
                i += 1
                guard parseComplete(b, &i, arrayDepth: arrayDepth + 1, structDepth: structDepth + 1) else { return false }
                guard i < b.count, b[i] == UInt8(ascii: "}") else { return false }
                i += 1
                return true
            }
            return parseComplete(b, &i, arrayDepth: arrayDepth + 1, structDepth: structDepth)
        case UInt8(ascii: "("):
            guard structDepth < 32 else { return false }
            i += 1
            var count = 0
            while i < b.count && b[i] != UInt8(ascii: ")") {
                guard parseComplete(b, &i, arrayDepth: arrayDepth, structDepth: structDepth + 1) else { return false }
                count += 1
            }
            guard i < b.count, count > 0 else { return false }
            i += 1
            return true
        default:
            return false
        }
    }
}
