import CSystemd
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Turns a negative sd-bus return value into a DBusError (errno → D-Bus error
/// name as sd-bus maps it, e.g. EACCES → org.freedesktop.DBus.Error.AccessDenied).
func busError(_ operation: String, _ r: Int32) -> DBusError {
    var e = sd_bus_error()
    _ = sd_bus_error_set_errno(&e, r < 0 ? -r : r)
    defer { sd_bus_error_free(&e) }
    let name = e.name.map { String(cString: $0) } ?? "org.freedesktop.DBus.Error.Failed"
    let message = e.message.map { String(cString: $0) } ?? String(cString: strerror(r < 0 ? -r : r))
    return DBusError(name: name, message: "\(operation): \(message)")
}

@inline(__always)
func check(_ operation: String, _ r: Int32) throws(DBusError) {
    if r < 0 { throw busError(operation, r) }
}

private func ascii(_ s: String) -> CChar { CChar(bitPattern: s.utf8.first!) }

// MARK: - Writing

enum Marshal {
    /// Appends `values` as consecutive top-level arguments.
    static func append(_ values: [Value], to m: OpaquePointer) throws(DBusError) {
        for v in values {
            try append(v, expected: nil, to: m)
        }
    }

    /// Appends values that must match `signature` exactly (e.g. a method's declared output).
    static func append(_ values: [Value], matching signature: Signature, to m: OpaquePointer) throws(DBusError) {
        let types = signature.completeTypes
        guard types.count == values.count else {
            throw .invalidArgs("expected \(types.count) values for signature \"\(signature)\", got \(values.count)")
        }
        for (v, t) in zip(values, types) {
            try append(v, expected: t, to: m)
        }
    }

    /// Appends one value; if `expected` is given, the value's signature must equal it.
    /// Containers check every element against their declared element signature.
    static func append(_ value: Value, expected: Signature?, to m: OpaquePointer) throws(DBusError) {
        if let expected, value.signature != expected {
            throw .invalidArgs("value of type \"\(value.signature)\" where \"\(expected)\" was expected")
        }
        switch value {
        case .byte(var v): try basic(m, "y", &v)
        case .boolean(let b):
            var v: Int32 = b ? 1 : 0
            try basic(m, "b", &v)
        case .int16(var v): try basic(m, "n", &v)
        case .uint16(var v): try basic(m, "q", &v)
        case .int32(var v): try basic(m, "i", &v)
        case .uint32(var v): try basic(m, "u", &v)
        case .int64(var v): try basic(m, "x", &v)
        case .uint64(var v): try basic(m, "t", &v)
        case .double(var v): try basic(m, "d", &v)
        case .string(let s): try string(m, "s", s)
        case .objectPath(let p): try string(m, "o", p.rawValue)
        case .signature(let g): try string(m, "g", g.rawValue)
        case .array(let element, let elements):
            guard element.isSingleCompleteType else {
                throw .invalidArgs("array element signature \"\(element)\" is not a single complete type")
            }
            guard !element.rawValue.hasPrefix("{") else {
                throw .invalidArgs("use .dictionary for dict entry arrays")
            }
            try open(m, "a", element.rawValue)
            for e in elements { try append(e, expected: element, to: m) }
            try close(m)
        case .dictionary(let key, let valueType, let entries):
            guard key.rawValue.utf8.count == 1, Signature.basicTypes.contains(key.rawValue.utf8.first!) else {
                throw .invalidArgs("dictionary key signature \"\(key)\" is not a basic type")
            }
            guard valueType.isSingleCompleteType else {
                throw .invalidArgs("dictionary value signature \"\(valueType)\" is not a single complete type")
            }
            let entrySig = key.rawValue + valueType.rawValue
            try open(m, "a", "{" + entrySig + "}")
            for entry in entries {
                try open(m, "e", entrySig)
                try append(entry.key, expected: key, to: m)
                try append(entry.value, expected: valueType, to: m)
                try close(m)
            }
            try close(m)
        case .structure(let fields):
            guard !fields.isEmpty else { throw .invalidArgs("empty structure") }
            let sig = value.signature.rawValue
            guard value.signature.isSingleCompleteType else {
                throw .invalidArgs("invalid structure signature \"\(sig)\"")
            }
            try open(m, "r", String(sig.dropFirst().dropLast()))
            for f in fields { try append(f, expected: nil, to: m) }
            try close(m)
        case .variant(let inner):
            let sig = inner.signature
            guard sig.isSingleCompleteType else {
                throw .invalidArgs("invalid variant content signature \"\(sig)\"")
            }
            try open(m, "v", sig.rawValue)
            try append(inner, expected: nil, to: m)
            try close(m)
        }
    }

    private static func basic<T>(_ m: OpaquePointer, _ type: String, _ v: inout T) throws(DBusError) {
        let r = withUnsafePointer(to: &v) { sd_bus_message_append_basic(m, ascii(type), $0) }
        try check("sd_bus_message_append_basic", r)
    }

    private static func string(_ m: OpaquePointer, _ type: String, _ s: String) throws(DBusError) {
        if s.utf8.contains(0) { throw .invalidArgs("string contains NUL") }
        let r = s.withCString { sd_bus_message_append_basic(m, ascii(type), $0) }
        try check("sd_bus_message_append_basic", r)
    }

    private static func open(_ m: OpaquePointer, _ type: String, _ contents: String) throws(DBusError) {
        let r = sd_bus_message_open_container(m, ascii(type), contents)
        try check("sd_bus_message_open_container", r)
    }

    private static func close(_ m: OpaquePointer) throws(DBusError) {
        try check("sd_bus_message_close_container", sd_bus_message_close_container(m))
    }

    // MARK: - Reading

    /// Reads all remaining values at the current level of `m` (the whole body for a fresh message).
    static func readAll(_ m: OpaquePointer) throws(DBusError) -> [Value] {
        var values: [Value] = []
        while let v = try read(m) { values.append(v) }
        return values
    }

    /// Reads the next value, or nil at the end of the current container.
    static func read(_ m: OpaquePointer) throws(DBusError) -> Value? {
        var type: CChar = 0
        var contentsPtr: UnsafePointer<CChar>?
        let r = sd_bus_message_peek_type(m, &type, &contentsPtr)
        try check("sd_bus_message_peek_type", r)
        if r == 0 { return nil }
        let contents = contentsPtr.map { String(cString: $0) } ?? ""
        switch UInt8(bitPattern: type) {
        case UInt8(ascii: "y"): return .byte(try readBasic(m, type, UInt8(0)))
        case UInt8(ascii: "b"): return .boolean(try readBasic(m, type, Int32(0)) != 0)
        case UInt8(ascii: "n"): return .int16(try readBasic(m, type, Int16(0)))
        case UInt8(ascii: "q"): return .uint16(try readBasic(m, type, UInt16(0)))
        case UInt8(ascii: "i"): return .int32(try readBasic(m, type, Int32(0)))
        case UInt8(ascii: "u"): return .uint32(try readBasic(m, type, UInt32(0)))
        case UInt8(ascii: "x"): return .int64(try readBasic(m, type, Int64(0)))
        case UInt8(ascii: "t"): return .uint64(try readBasic(m, type, UInt64(0)))
        case UInt8(ascii: "d"): return .double(try readBasic(m, type, Double(0)))
        case UInt8(ascii: "s"): return .string(try readString(m, type))
        case UInt8(ascii: "o"): return .objectPath(ObjectPath(unchecked: try readString(m, type)))
        case UInt8(ascii: "g"): return .signature(Signature(unchecked: try readString(m, type)))
        case UInt8(ascii: "a"):
            try enter(m, type, contents)
            if contents.hasPrefix("{") {
                let inner = Array(contents.utf8.dropFirst().dropLast())
                let key = Signature(unchecked: String(decoding: inner.prefix(1), as: UTF8.self))
                let value = Signature(unchecked: String(decoding: inner.dropFirst(), as: UTF8.self))
                var entries: [DictEntry] = []
                while true {
                    var t: CChar = 0
                    let p = sd_bus_message_peek_type(m, &t, nil)
                    try check("sd_bus_message_peek_type", p)
                    if p == 0 { break }
                    try enter(m, t, key.rawValue + value.rawValue)
                    guard let k = try read(m), let v = try read(m) else {
                        throw .invalidArgs("malformed dict entry")
                    }
                    try exit(m)
                    entries.append(DictEntry(key: k, value: v))
                }
                try exit(m)
                return .dictionary(key: key, value: value, entries)
            }
            let elements = try readAll(m)
            try exit(m)
            return .array(element: Signature(unchecked: contents), elements)
        case UInt8(ascii: "r"):
            try enter(m, type, contents)
            let fields = try readAll(m)
            try exit(m)
            return .structure(fields)
        case UInt8(ascii: "v"):
            try enter(m, type, contents)
            guard let inner = try read(m) else { throw .invalidArgs("empty variant") }
            try exit(m)
            return .variant(inner)
        default:
            throw .notSupported("unsupported D-Bus type '\(Character(Unicode.Scalar(UInt8(bitPattern: type))))'")
        }
    }

    private static func readBasic<T>(_ m: OpaquePointer, _ type: CChar, _ initial: T) throws(DBusError) -> T {
        var v = initial
        let r = withUnsafeMutablePointer(to: &v) { sd_bus_message_read_basic(m, type, $0) }
        try check("sd_bus_message_read_basic", r)
        return v
    }

    private static func readString(_ m: OpaquePointer, _ type: CChar) throws(DBusError) -> String {
        var p: UnsafePointer<CChar>?
        let r = sd_bus_message_read_basic(m, type, &p)
        try check("sd_bus_message_read_basic", r)
        return p.map { String(cString: $0) } ?? ""
    }

    private static func enter(_ m: OpaquePointer, _ type: CChar, _ contents: String) throws(DBusError) {
        try check("sd_bus_message_enter_container", sd_bus_message_enter_container(m, type, contents))
    }

    private static func exit(_ m: OpaquePointer) throws(DBusError) {
        try check("sd_bus_message_exit_container", sd_bus_message_exit_container(m))
    }
}
