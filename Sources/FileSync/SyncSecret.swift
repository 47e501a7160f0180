// The rsync password of the pair, derived from the heartbeat key: both nodes hold the key
// already, so no second secret has to be generated, copied or rotated.
internal import Crypto

/// The shared secret of user ``SyncSecret/user`` in the peer's rsync daemon.
///
/// It is HMAC-SHA256(heartbeat key, "kusu-ha rsync v1"), in lower-case hexadecimal, cut to
/// 32 characters (128 bits). The label separates it from every other use of the key: knowing
/// the rsync password reveals nothing about the heartbeat key. Changing the heartbeat key
/// changes it on both nodes at once.
public struct SyncSecret: Sendable, Equatable, CustomStringConvertible {
    /// The rsync user both modules require (`auth users`).
    public static let user = "kusu-sync"
    /// The HMAC message: the purpose and version of the derivation.
    public static let label = "kusu-ha rsync v1"
    /// Hexadecimal characters kept.
    public static let length = 32

    /// The password itself.
    public let password: String

    /// Derives the secret from the raw heartbeat key (the bytes of `cluster.auth_key_file`).
    public init(heartbeatKey: [UInt8]) {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(Self.label.utf8), using: SymmetricKey(data: heartbeatKey))
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in mac.withUnsafeBytes({ Array($0) }) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        password = String(decoding: hex.prefix(Self.length), as: UTF8.self)
    }

    /// The daemon's `secrets file` (mode 0600, owned by root): `kusu-sync:<password>`.
    public var secretsFileText: String { "\(Self.user):\(password)\n" }

    /// What the client gives rsync's `--password-file` (a file of mode 0600, or its stdin
    /// with `--password-file=-`): the password alone on its line.
    public var passwordFileText: String { password + "\n" }

    /// Never the password: this value may end up in a log line.
    public var description: String { "SyncSecret(\(Self.length) hex characters)" }
}
