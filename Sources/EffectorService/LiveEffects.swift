// The real side effects, assembled for kusu-effectord.
public import ClusterCore
public import DBusKit
import Effector

public final class LiveEffects {
    public let addresses: any AddressEffects
    public let database: (any DatabaseEffects)?
    public let units: any UnitEffects
    let systemdUnits: SystemdUnits
    let configuration: Configuration

    public init(configuration: Configuration, bus: BusConnection) throws(EffectorError) {
        self.configuration = configuration
        addresses = try KernelAddresses()
        database = configuration.database.map { PostgresDatabase(settings: $0, localNode: configuration.localNode.name, peerNode: configuration.peerNode.name) }
        systemdUnits = SystemdUnits(bus: bus)
        units = systemdUnits
    }

    /// Calls `onChange(unit)` whenever systemd signals a change of a configured unit (its
    /// state, its result, its restarts).
    public func watchUnits(_ onChange: @escaping (String) -> Void) {
        guard !configuration.units.isEmpty else { return }
        try? systemdUnits.manager.watch(configuration.units, onChange: { _, _ in }, onAnyChange: onChange)
    }
}
