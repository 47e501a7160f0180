// systemd units for the effector: UnitManager (org.freedesktop.systemd1) behind UnitEffects.
import ClusterCore
import DBusKit
import Effector

final class SystemdUnits: UnitEffects {
    let manager: UnitManager
    /// A unit job that takes longer than this is reported as failed (systemd's own
    /// start timeout usually ends it first).
    let jobTimeout: Duration = .seconds(120)

    init(bus: BusConnection) {
        manager = UnitManager(bus: bus)
    }

    func start(_ units: [String], completion: @escaping (Result<Void, EffectorError>) -> Void) {
        manager.start(units, timeout: jobTimeout) { completion($0.mapError(Self.effectorError)) }
    }

    func stop(_ units: [String], completion: @escaping (Result<Void, EffectorError>) -> Void) {
        manager.stop(units, timeout: jobTimeout) { completion($0.mapError(Self.effectorError)) }
    }

    func stopKilling(_ unit: String, completion: @escaping (Result<Void, EffectorError>) -> Void) {
        manager.stopKilling(unit, timeout: jobTimeout) { completion($0.mapError(Self.effectorError)) }
    }

    func observations(_ units: [String], completion: @escaping ([String: UnitObservation]) -> Void) {
        manager.observations(units, completion: completion)
    }

    static func effectorError(_ error: UnitError) -> EffectorError {
        switch error.code {
        case .jobFailed, .noSuchUnit, .timeout: EffectorError(.unitFailed, error.message)
        case .busError: EffectorError(.failed, error.message)
        }
    }
}
