/// A PostgreSQL WAL position (LSN) as PostgreSQL writes it: `16/B374D848`.
public func formatLSN(_ lsn: UInt64) -> String {
    String(lsn >> 32, radix: 16, uppercase: true) + "/" + String(lsn & 0xFFFF_FFFF, radix: 16, uppercase: true)
}
