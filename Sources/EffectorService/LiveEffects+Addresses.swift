// Floating addresses for the effector: rtnetlink and AF_PACKET behind AddressEffects.
import ClusterCore
import Effector

final class KernelAddresses: AddressEffects {
    let manager: RtnetlinkAddressManager
    let announcer = PacketAnnouncer()

    init() throws(EffectorError) {
        do {
            manager = try RtnetlinkAddressManager()
        } catch {
            throw EffectorError(.netlinkFailed, "cannot open rtnetlink: \(error)")
        }
    }

    func add(_ address: FloatingAddress) throws(EffectorError) -> Bool {
        do { return try manager.add(address) } catch { throw EffectorError(.netlinkFailed, error.description) }
    }

    func remove(_ address: FloatingAddress) throws(EffectorError) -> Bool {
        do { return try manager.remove(address) } catch { throw EffectorError(.netlinkFailed, error.description) }
    }

    func holds(_ address: FloatingAddress) -> Bool? {
        try? manager.holds(address)
    }

    /// 100 ms: a live host answers ARP within a millisecond on its LAN; this is added to
    /// every automatic takeover, so it stays short.
    let prober: @Sendable (FloatingAddress) -> Result<AddressProbe, EffectorError> = { address in
        do throws(NetlinkError) {
            let answer = try ARPProbe.probe(address, wait: .milliseconds(100))
            return .success(AddressProbe(answered: answer.answered, mac: answer.mac))
        } catch {
            return .failure(EffectorError(.netlinkFailed, error.description))
        }
    }

    func announce(_ address: FloatingAddress) throws(EffectorError) {
        do { try announcer.announce(address) } catch { throw EffectorError(.netlinkFailed, error.description) }
    }
}
