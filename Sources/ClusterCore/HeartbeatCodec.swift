internal import Crypto

/// The heartbeat wire format, version 1. All integers big-endian.
///
/// ```
/// offset size
///      0    4  magic "KUHB"
///      4    1  version = 1
///      5    1  kind (1 = heartbeat)
///      6    1  role (NodeRole.wireCode)
///      7    1  link
///      8    2  flags: bit 0 auto-failover, bit 1 maintenance, bit 2 handover (lsn is final),
///                 bit 3 switchover requested, bit 4 synchronous (the sender's primary
///                 waits for the receiver's standby on every commit), bit 5 reaches
///                 tie-breaker (the sender's service network works), bit 6 service ready
///                 (the sender's own copy of the service could serve), bit 7 clean handover
///                 (with bit 2: the final LSN is a clean stop's); other bits ignored
///     10    2  reserved: sent as 0, ignored
///     12    8  generation
///     20    8  sequence
///     28    8  epoch
///     36    8  lsn (0 = none)
///     44    8  sentAt (CLOCK_REALTIME µs)
///     52  1+n  cluster name: length (1...64) + UTF-8
///        1+m  node name: length (1...64) + UTF-8
///        2+e  extension: length + bytes (covered by the MAC)
///         32  HMAC-SHA256(key, every byte before it)
/// ```
///
/// The extension is a sequence of records `type (1) · length (2) · value`; a receiver skips
/// types it does not know (so older receivers, which skip the whole extension, and newer
/// senders understand each other). Type 1, the resources the sender gave up: each as
/// `length (1) · name`, at most ``maximumGivenUp``, each a valid resource name. Type 2, a
/// cleanup of failures asked on the sender: `id (8) · length (1) · name` (an empty name: every
/// resource). A record that overruns the extension, or a malformed known record, makes the
/// (authentic) packet `.malformed`.
public enum HeartbeatCodec {
    public static let magic: [UInt8] = Array("KUHB".utf8)
    public static let version: UInt8 = 1
    public static let macSize = 32
    /// The fixed header, up to and including `sentAt`.
    static let fixedSize = 52
    /// The smallest well-framed packet (empty names and extension).
    public static let minimumSize = fixedSize + 1 + 1 + 2 + macSize
    /// The largest packet accepted (and the receive buffer the shell needs): fits an IPv6
    /// minimum-MTU datagram (1280 - 40 - 8).
    public static let maximumSize = 1232
    /// The largest name on the wire, in UTF-8 bytes.
    public static let maximumNameLength = 64

    static let autoFailoverFlag: UInt16 = 1 << 0
    static let maintenanceFlag: UInt16 = 1 << 1
    static let handoverFlag: UInt16 = 1 << 2
    static let switchoverRequestFlag: UInt16 = 1 << 3
    static let synchronousFlag: UInt16 = 1 << 4
    static let tieBreakerFlag: UInt16 = 1 << 5
    static let serviceReadyFlag: UInt16 = 1 << 6
    static let handoverCleanFlag: UInt16 = 1 << 7
    /// The extension record of the given-up resources.
    static let gaveUpRecord: UInt8 = 1
    /// The extension record of a cleanup request.
    static let cleanupRecord: UInt8 = 2
    /// The most given-up resource names a heartbeat carries (more are not sent).
    public static let maximumGivenUp = 16

    /// The signed packet for `heartbeat`.
    ///
    /// - Precondition: the names have 1...64 UTF-8 bytes and the extension fits the maximum size
    ///   (programmer errors: the configuration guarantees the names).
    ///   `extension` is appended to the records the heartbeat's own fields make (for tests and
    ///   tools that send unknown records).
    public static func encode(_ heartbeat: Heartbeat, key: HeartbeatKey, extension extra: [UInt8] = []) -> [UInt8] {
        var `extension` = extensionRecords(heartbeat)
        `extension` += extra
        let cluster = Array(heartbeat.cluster.utf8)
        let node = Array(heartbeat.node.utf8)
        precondition((1...maximumNameLength).contains(cluster.count), "cluster name must have 1...64 bytes")
        precondition((1...maximumNameLength).contains(node.count), "node name must have 1...64 bytes")
        var body: [UInt8] = []
        body.reserveCapacity(fixedSize + 4 + cluster.count + node.count + `extension`.count + macSize)
        body += magic
        body.append(version)
        body.append(heartbeat.kind.rawValue)
        body.append(heartbeat.role.wireCode)
        body.append(heartbeat.link)
        var flags: UInt16 = 0
        if heartbeat.autoFailover { flags |= autoFailoverFlag }
        if heartbeat.maintenance { flags |= maintenanceFlag }
        if heartbeat.handover { flags |= handoverFlag }
        if heartbeat.switchoverRequested { flags |= switchoverRequestFlag }
        if heartbeat.synchronous { flags |= synchronousFlag }
        if heartbeat.reachesTieBreaker { flags |= tieBreakerFlag }
        if heartbeat.serviceReady { flags |= serviceReadyFlag }
        if heartbeat.handoverClean { flags |= handoverCleanFlag }
        append(flags, to: &body)
        append(UInt16(0), to: &body)
        for value in [heartbeat.generation, heartbeat.sequence, heartbeat.epoch, heartbeat.lsn, heartbeat.sentAt] {
            append(value, to: &body)
        }
        body.append(UInt8(cluster.count))
        body += cluster
        body.append(UInt8(node.count))
        body += node
        append(UInt16(`extension`.count), to: &body)
        body += `extension`
        let packet = seal(body, key: key)
        precondition(packet.count <= maximumSize, "heartbeat extension too large")
        return packet
    }

    /// `body` followed by its MAC. For tools and tests that craft unusual (even invalid)
    /// packets that still carry a valid signature.
    public static func seal(_ body: [UInt8], key: HeartbeatKey) -> [UInt8] {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: key.key)
        return body + mac.withUnsafeBytes { Array($0) }
    }

    /// Decodes and authenticates a packet. Never traps, whatever the input.
    ///
    /// The checks run in this order: framing (magic, version, kind, lengths), then the MAC
    /// (constant time), then the contents (role, names, trailing bytes); so nothing in a
    /// packet is interpreted before it is known to come from a key holder.
    public static func decode(_ bytes: [UInt8], key: HeartbeatKey) -> Result<Heartbeat, PacketRejection> {
        var reader = Reader(bytes: bytes[...])
        guard bytes.count <= maximumSize else { return .failure(.malformed) }
        guard let head = reader.bytes(4) else { return .failure(magic.starts(with: bytes) ? .truncated : .badMagic) }
        guard head.elementsEqual(magic) else { return .failure(.badMagic) }
        guard let version = reader.u8() else { return .failure(.truncated) }
        guard version == Self.version else { return .failure(.unsupportedVersion) }
        guard let kindCode = reader.u8() else { return .failure(.truncated) }
        guard let kind = PacketKind(rawValue: kindCode) else { return .failure(.unsupportedKind) }
        guard let roleCode = reader.u8(), let link = reader.u8(), let flags = reader.u16(), reader.u16() != nil,
            let generation = reader.u64(), let sequence = reader.u64(), let epoch = reader.u64(),
            let lsn = reader.u64(), let sentAt = reader.u64(),
            let clusterLength = reader.u8(), let cluster = reader.bytes(Int(clusterLength)),
            let nodeLength = reader.u8(), let node = reader.bytes(Int(nodeLength)),
            let extensionLength = reader.u16(), let extensionBytes = reader.bytes(Int(extensionLength))
        else { return .failure(.truncated) }
        let signedEnd = reader.offset
        guard let mac = reader.bytes(macSize) else { return .failure(.truncated) }
        let authentic = HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: bytes[..<signedEnd], using: key.key)
        guard authentic else { return .failure(.badSignature) }
        guard reader.remaining == 0 else { return .failure(.malformed) }
        guard generation <= Heartbeat.maximumCounter, sequence <= Heartbeat.maximumCounter, epoch <= Heartbeat.maximumCounter
        else { return .failure(.outOfRange) }

        guard let role = NodeRole(wireCode: roleCode),
            let clusterName = name(cluster), let nodeName = name(node),
            let records = parseExtension(extensionBytes)
        else { return .failure(.malformed) }
        return .success(
            Heartbeat(
                kind: kind, role: role, link: link,
                autoFailover: flags & autoFailoverFlag != 0, maintenance: flags & maintenanceFlag != 0,
                generation: generation, sequence: sequence, epoch: epoch, lsn: lsn, sentAt: sentAt,
                cluster: clusterName, node: nodeName,
                handover: flags & handoverFlag != 0, switchoverRequested: flags & switchoverRequestFlag != 0,
                synchronous: flags & synchronousFlag != 0, reachesTieBreaker: flags & tieBreakerFlag != 0,
                serviceReady: flags & serviceReadyFlag != 0, gaveUp: records.gaveUp, cleanup: records.cleanup,
                handoverClean: flags & handoverCleanFlag != 0
            )
        )
    }

    /// The records the heartbeat's fields make (none for an empty given-up list: a packet of a
    /// node with nothing given up is byte for byte a version-1 packet without extension).
    ///
    /// Only names the decoder accepts are sent, at most ``maximumGivenUp``, and no more than
    /// fit the packet's maximum size with the heartbeat's names (so encoding never traps).
    static func extensionRecords(_ heartbeat: Heartbeat) -> [UInt8] {
        var records: [UInt8] = []
        if let cleanup = heartbeat.cleanup, cleanup.resource.isEmpty || ResourceName.isValid(cleanup.resource) {
            let name = Array(cleanup.resource.utf8)
            records.append(cleanupRecord)
            append(UInt16(8 + 1 + name.count), to: &records)
            append(cleanup.id, to: &records)
            records.append(UInt8(name.count))
            records += name
        }
        let fixed = fixedSize + 1 + heartbeat.cluster.utf8.count + 1 + heartbeat.node.utf8.count + 2 + macSize + records.count
        var budget = maximumSize - fixed - 3  // the record's type and length
        var value: [UInt8] = []
        var count = 0
        for name in heartbeat.gaveUp where ResourceName.isValid(name) {
            let bytes = Array(name.utf8)
            guard count < maximumGivenUp, budget >= 1 + bytes.count else { break }
            value.append(UInt8(bytes.count))
            value += bytes
            budget -= 1 + bytes.count
            count += 1
        }
        guard !value.isEmpty else { return records }
        records.append(gaveUpRecord)
        append(UInt16(value.count), to: &records)
        return records + value
    }

    /// The known records of an extension; nil when it is malformed.
    private static func parseExtension(_ bytes: ArraySlice<UInt8>) -> (gaveUp: [String], cleanup: ResourceCleanup?)? {
        var reader = Reader(bytes: bytes)
        var gaveUp: [String] = []
        var cleanup: ResourceCleanup?
        while reader.remaining > 0 {
            guard let type = reader.u8(), let length = reader.u16(), let value = reader.bytes(Int(length)) else { return nil }
            var fields = Reader(bytes: value)
            switch type {
            case gaveUpRecord:
                while fields.remaining > 0 {
                    guard gaveUp.count < maximumGivenUp, let count = fields.u8(), let raw = fields.bytes(Int(count)),
                        let text = name(raw), ResourceName.isValid(text)
                    else { return nil }
                    gaveUp.append(text)
                }
            case cleanupRecord:
                guard cleanup == nil, let id = fields.u64(), let count = fields.u8(), let raw = fields.bytes(Int(count)),
                    fields.remaining == 0
                else { return nil }
                if count == 0 {
                    cleanup = ResourceCleanup(id: id, resource: "")
                } else {
                    guard let text = name(raw), ResourceName.isValid(text) else { return nil }
                    cleanup = ResourceCleanup(id: id, resource: text)
                }
            default:
                continue  // unknown: skipped
            }
        }
        return (gaveUp, cleanup)
    }

    /// 1...64 bytes of valid UTF-8 without control characters.
    private static func name(_ bytes: ArraySlice<UInt8>) -> String? {
        guard (1...maximumNameLength).contains(bytes.count), !bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            return nil
        }
        var scalars = String.UnicodeScalarView()
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: return String(scalars)
            case .error: return nil
            }
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        var big = value.bigEndian
        withUnsafeBytes(of: &big) { bytes += $0 }
    }

    /// A bounds-checked big-endian reader: every accessor returns `nil` past the end.
    private struct Reader {
        let bytes: ArraySlice<UInt8>
        var offset: Int

        init(bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            self.offset = bytes.startIndex
        }

        var remaining: Int { bytes.endIndex - offset }

        mutating func bytes(_ count: Int) -> ArraySlice<UInt8>? {
            guard count >= 0, count <= remaining else { return nil }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }

        mutating func u8() -> UInt8? { bytes(1)?.first }

        mutating func u16() -> UInt16? { integer() }

        mutating func u64() -> UInt64? { integer() }

        private mutating func integer<T: FixedWidthInteger>() -> T? {
            guard let slice = bytes(MemoryLayout<T>.size) else { return nil }
            return slice.reduce(T(0)) { $0 << 8 | T($1) }
        }
    }
}
