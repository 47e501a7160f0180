// Start-up code that stays resident for nothing.
//
// The kernel maps a program's code in 64 KiB "fault-around" chunks, so parsing the
// configuration, setting up the bus and the first calls leave megabytes of code mapped
// that a steady heartbeat loop never runs again (kusu-hbd: about 7.5 MiB of its 16 MiB
// of code). MADV_DONTNEED on the executable's own code mapping drops those page-table
// entries: the pages stay in the page cache, and whatever the loop runs next is mapped
// again on its first use (a minor fault). Only the read-and-execute mapping of the
// executable is touched: code is never written, so nothing can be lost — unlike the
// data and RELRO mappings, whose pages were written at start (relocations) and would
// revert to the file's contents.
import Glibc

public enum ResidentCode {
    /// Drops the executable's code pages from this process's page tables; returns how many
    /// bytes of mapping it covered (0 when it found none, or on any failure: harmless).
    @discardableResult
    public static func releaseExecutableCode() -> Int {
        guard let executable = realPath("/proc/self/exe"), let bytes = try? Files.read("/proc/self/maps") else { return 0 }
        let maps = String(decoding: bytes, as: UTF8.self)
        var released = 0
        for line in maps.split(separator: "\n") {
            // start-end perms offset dev inode path
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "r-xp", fields[5...].joined(separator: " ") == executable else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start,
                  let pointer = UnsafeMutableRawPointer(bitPattern: start)
            else { continue }
            if madvise(pointer, Int(end - start), MADV_DONTNEED) == 0 { released += Int(end - start) }
        }
        return released
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
