// A thin, blocking wrapper over libpq.
//
// Threading: libpq is thread-safe, but one `PostgresConnection` must be used by one thread at a
// time (it is deliberately not Sendable). Open a connection on the worker thread that uses it.

internal import CLibpq
import Glibc
// Glibc types (timespec, SOCK_*) that the CNetlink headers also declare are attributed
// to whichever module clang builds first; importing both keeps every build seeing them.
import CNetlink

/// A failed connection attempt or query, with libpq's message (trimmed, first line kept whole).
public struct PostgresError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    /// The SQLSTATE of a failed query (e.g. "42P01"), nil for connection errors.
    public var sqlState: String?

    public init(message: String, sqlState: String? = nil) {
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }
}

/// One libpq connection. Closed (PQfinish) when the object goes away.
public final class PostgresConnection {
    private let connection: OpaquePointer

    /// Connects with `parameters` (keyword, value), e.g. `[("host", "/run/postgresql"), ("port", "5432")]`.
    /// Values are quoted, so any value (spaces, quotes, backslashes) is passed through unchanged.
    public convenience init(parameters: [(String, String)]) throws(PostgresError) {
        try self.init(conninfo: Self.conninfo(parameters))
    }

    /// Connects with a ready conninfo string (`key=value ...` or a URI).
    public init(conninfo: String) throws(PostgresError) {
        guard let connection = PQconnectdb(conninfo) else {
            throw PostgresError(message: "out of memory while connecting to PostgreSQL")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(connection))
            PQfinish(connection)
            throw PostgresError(message: message.isEmpty ? "could not connect to PostgreSQL" : message)
        }
        self.connection = connection
    }

    deinit { PQfinish(connection) }

    /// Builds a conninfo string from keyword/value pairs, quoting each value as libpq expects
    /// (`key='va\'lue'`: single quotes and backslashes escaped with a backslash).
    public static func conninfo(_ parameters: [(String, String)]) -> String {
        parameters.map { "\($0.0)=\(quote($0.1))" }.joined(separator: " ")
    }

    /// One conninfo value, quoted.
    public static func quote(_ value: String) -> String {
        var quoted = "'"
        for character in value {
            if character == "'" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        quoted.append("'")
        return quoted
    }

    /// Runs one statement (PQexecParams: a single statement, never a script) with text parameters ($1, $2, ...; nil is SQL NULL) and returns its rows,
    /// each column as text or nil for NULL. Statements that return no rows give `[]`.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> [[String?]] {
        let result = withCStrings(parameters) { values in
            PQexecParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        guard let result else {
            throw PostgresError(message: Self.trimmed(PQerrorMessage(connection)))
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            break
        default:
            throw Self.error(result, connection)
        }
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        var rows: [[String?]] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            var columns: [String?] = []
            columns.reserveCapacity(Int(columnCount))
            for column in 0..<columnCount {
                if PQgetisnull(result, row, column) != 0 {
                    columns.append(nil)
                } else {
                    columns.append(String(cString: PQgetvalue(result, row, column)))
                }
            }
            rows.append(columns)
        }
        return rows
    }

    /// Runs one or more statements separated by semicolons, without parameters (PQexec, the
    /// simple query protocol); for scripts. Anything with values in it goes through `query`.
    public func execute(_ sql: String) throws(PostgresError) {
        guard let result = PQexec(connection, sql) else {
            throw PostgresError(message: Self.trimmed(PQerrorMessage(connection)))
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return
        default:
            throw Self.error(result, connection)
        }
    }

    private static func error(_ result: OpaquePointer, _ connection: OpaquePointer) -> PostgresError {
        var message = trimmed(PQresultErrorMessage(result))
        if message.isEmpty { message = trimmed(PQerrorMessage(connection)) }
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        return PostgresError(message: message, sqlState: state)
    }

    /// The first column of the first row (nil when NULL or there is no row).
    public func scalar(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> String? {
        try query(sql, parameters).first?.first ?? nil
    }

    /// The server's version number, e.g. 150004.
    public var serverVersion: Int { Int(PQserverVersion(connection)) }

    /// libpq's messages end in a newline and may carry "ERROR:  " / "FATAL:  " prefixes and
    /// tab-indented hints; keep them whole but collapse the layout into one line.
    static func trimmed(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        var text = String(cString: pointer)
        for prefix in ["ERROR:  ", "FATAL:  "] where text.hasPrefix(prefix) {
            text.removeFirst(prefix.count)
        }
        let lines = text.split(whereSeparator: { $0 == "\n" })
            .map { $0.drop(while: { $0 == " " || $0 == "\t" }) }
            .filter { !$0.isEmpty }
        return lines.joined(separator: "; ")
    }
}

/// Calls `body` with a C array of NUL-terminated copies of `strings` (nil stays NULL).
private func withCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
    defer { copies.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}
