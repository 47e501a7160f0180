/// One key/value pair of a D-Bus dictionary (`a{kv}`).
public struct DictEntry: Hashable, Sendable {
    public var key: Value
    public var value: Value
    public init(key: Value, value: Value) {
        self.key = key
        self.value = value
    }
}

/// A D-Bus value of any type (Unix fds excepted).
public indirect enum Value: Hashable, Sendable {
    case byte(UInt8)
    case boolean(Bool)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(ObjectPath)
    case signature(Signature)
    /// An array whose elements all have signature `element` (one complete type).
    case array(element: Signature, [Value])
    /// `a{kv}`: `key` must be a basic type.
    case dictionary(key: Signature, value: Signature, [DictEntry])
    /// A struct; must have at least one field.
    case structure([Value])
    case variant(Value)

    /// This value's type signature (not validated: a malformed value has a malformed signature).
    public var signature: Signature {
        switch self {
        case .byte: "y"
        case .boolean: "b"
        case .int16: "n"
        case .uint16: "q"
        case .int32: "i"
        case .uint32: "u"
        case .int64: "x"
        case .uint64: "t"
        case .double: "d"
        case .string: "s"
        case .objectPath: "o"
        case .signature: "g"
        case .array(let element, _): Signature(unchecked: "a" + element.rawValue)
        case .dictionary(let key, let value, _): Signature(unchecked: "a{" + key.rawValue + value.rawValue + "}")
        case .structure(let fields): Signature(unchecked: "(" + fields.map(\.signature.rawValue).joined() + ")")
        case .variant: "v"
        }
    }

    public var string: String? { if case .string(let v) = self { v } else { nil } }
    public var bool: Bool? { if case .boolean(let v) = self { v } else { nil } }
    public var byte: UInt8? { if case .byte(let v) = self { v } else { nil } }
    public var int16: Int16? { if case .int16(let v) = self { v } else { nil } }
    public var uint16: UInt16? { if case .uint16(let v) = self { v } else { nil } }
    public var int32: Int32? { if case .int32(let v) = self { v } else { nil } }
    public var uint32: UInt32? { if case .uint32(let v) = self { v } else { nil } }
    public var int64: Int64? { if case .int64(let v) = self { v } else { nil } }
    public var uint64: UInt64? { if case .uint64(let v) = self { v } else { nil } }
    public var double: Double? { if case .double(let v) = self { v } else { nil } }
    public var objectPath: ObjectPath? { if case .objectPath(let v) = self { v } else { nil } }
    /// Elements of an array (not of a dictionary).
    public var array: [Value]? { if case .array(_, let v) = self { v } else { nil } }
    public var dictionary: [DictEntry]? { if case .dictionary(_, _, let v) = self { v } else { nil } }
    public var structure: [Value]? { if case .structure(let v) = self { v } else { nil } }
    public var variant: Value? { if case .variant(let v) = self { v } else { nil } }

    /// For an `a{s…}` dictionary: the entries keyed by string (later duplicates win).
    public var stringKeyedDictionary: [String: Value]? {
        guard case .dictionary(_, _, let entries) = self else { return nil }
        var result: [String: Value] = [:]
        for entry in entries {
            guard let key = entry.key.string else { return nil }
            result[key] = entry.value
        }
        return result
    }

    /// An `a{sv}` from a Swift dictionary (keys sorted, for a stable wire order).
    public static func vardict(_ d: [String: Value]) -> Value {
        .dictionary(key: "s", value: "v", d.sorted { $0.key < $1.key }.map {
            DictEntry(key: .string($0.key), value: .variant($0.value))
        })
    }

    /// An `as`.
    public static func strings(_ a: [String]) -> Value {
        .array(element: "s", a.map { .string($0) })
    }
}
