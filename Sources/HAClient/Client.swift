// Typed proxies over DBusKit for org.kusu.Heartbeat1 and org.kusu.Effector1.
// Blocking calls (callSync): this is a command-line client.
public import DBusKit
import ClusterAPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// CLOCK_REALTIME now in µs.
public func realtimeUSec() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
}

/// A connection to the system bus and the calls kusu-ha makes on it.
public final class ClusterClient {
    public let loop: EventLoop
    public let bus: BusConnection
    /// Set ALLOW_INTERACTIVE_AUTHORIZATION on method calls (a polkit agent may prompt).
    public var interactive: Bool
    public var timeout: Duration = .seconds(120)

    /// Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured).
    public init(interactive: Bool = true) throws(ClientError) {
        do {
            loop = try EventLoop()
        } catch {
            throw ClientError(.noBus(.failed("\(error)")))
        }
        do {
            bus = try BusConnection.system(on: loop)
            _ = bus.uniqueName // forces the Hello round trip, so a missing bus shows here
            try bus.flush()
        } catch {
            throw ClientError(.noBus(error))
        }
        self.interactive = interactive
    }

    public var heartbeat: Heartbeat1Proxy { Heartbeat1Proxy(client: self) }
    public var effector: Effector1Proxy { Effector1Proxy(client: self) }

    /// Calls `member` of `service`'s interface and waits for the reply.
    @discardableResult
    public func call(_ service: Service, _ member: String, _ arguments: [Value] = [],
                     interactive: Bool? = nil) throws(ClientError) -> [Value] {
        do {
            return try bus.callSync(destination: BusName(stringLiteral: service.busName),
                                    path: ObjectPath(stringLiteral: service.objectPath),
                                    interface: InterfaceName(stringLiteral: service.interface),
                                    member: MemberName(stringLiteral: member),
                                    arguments, timeout: timeout, interactive: interactive ?? self.interactive)
        } catch {
            throw .call(service, error)
        }
    }

    /// Calls `member` like `call`, and while waiting for the reply passes every new value of the
    /// service's `Progress` property (from PropertiesChanged) to `progress`.
    @discardableResult
    public func callShowingProgress(
        _ service: Service, _ member: String, _ arguments: [Value] = [], timeout: Duration,
        progress: @escaping (String) -> Void
    ) throws(ClientError) -> [Value] {
        var result: Result<[Value], DBusError>?
        let subscription: Subscription
        do {
            let rule = "type='signal',path='\(service.objectPath)',interface='org.freedesktop.DBus.Properties',"
                + "member='PropertiesChanged',arg0='\(service.interface)'"
            subscription = try bus.addMatch(rule) { message in
                guard message.arguments.count >= 2, let changed = message.arguments[1].stringKeyedDictionary,
                    let text = (changed[Effector1.Property.progress]?.variant ?? changed[Effector1.Property.progress])?.string,
                    !text.isEmpty
                else { return }
                progress(text)
            }
            _ = try bus.call(
                destination: BusName(stringLiteral: service.busName), path: ObjectPath(stringLiteral: service.objectPath),
                interface: InterfaceName(stringLiteral: service.interface), member: MemberName(stringLiteral: member),
                arguments, timeout: timeout, interactive: interactive
            ) { result = $0 }
            _ = try loop.run(until: loop.now + timeout + .seconds(5)) { result != nil }
        } catch let error as DBusError {
            throw .call(service, error)
        } catch {
            throw .call(service, .failed("\(error)"))
        }
        withExtendedLifetime(subscription) {}
        switch result {
        case .success(let values): return values
        case .failure(let error): throw .call(service, error)
        case nil: throw .call(service, .failed("no reply within \(timeout)"))
        }
    }

    /// All properties of `service`'s interface (org.freedesktop.DBus.Properties.GetAll).
    public func properties(of service: Service) throws(ClientError) -> [String: Value] {
        let reply: [Value]
        do {
            reply = try bus.callSync(destination: BusName(stringLiteral: service.busName),
                                     path: ObjectPath(stringLiteral: service.objectPath),
                                     interface: "org.freedesktop.DBus.Properties", member: "GetAll",
                                     [.string(service.interface)], timeout: .seconds(25))
        } catch {
            throw .call(service, error)
        }
        guard let dict = reply.first?.stringKeyedDictionary else {
            throw .call(service, .invalidArgs("Properties.GetAll reply is not a{sv}"))
        }
        return dict.mapValues { $0.variant ?? $0 }
    }

    /// Gathers the status from both services; either may be absent.
    public func status(configuredCluster: String? = nil, configuredNode: String? = nil) -> ClusterStatus {
        let hb: Part<HeartbeatStatus>
        do {
            hb = .running(HeartbeatStatus(properties: try properties(of: .heartbeat)))
        } catch {
            hb = .unavailable(error.line)
        }
        let ef: Part<EffectorStatus>
        do {
            ef = .running(EffectorStatus(properties: try properties(of: .effector)))
        } catch {
            ef = .unavailable(error.line)
        }
        return ClusterStatus(heartbeat: hb, effector: ef, configuredCluster: configuredCluster,
                             configuredNode: configuredNode, nowUSec: realtimeUSec())
    }
}

/// org.kusu.Heartbeat1 at /org/kusu/Heartbeat1 (kusu-hbd).
public struct Heartbeat1Proxy {
    let client: ClusterClient

    public func switchover() throws(ClientError) { try client.call(.heartbeat, Heartbeat1.Method.switchover) }
    public func takeover(force: Bool) throws(ClientError) {
        try client.call(.heartbeat, Heartbeat1.Method.takeover, [.boolean(force)])
    }
    public func setAutoFailover(_ on: Bool) throws(ClientError) {
        try client.call(.heartbeat, Heartbeat1.Method.setAutoFailover, [.boolean(on)])
    }
    public func setMaintenance(_ on: Bool) throws(ClientError) {
        try client.call(.heartbeat, Heartbeat1.Method.setMaintenance, [.boolean(on)])
    }
    /// Forgets the failures of one resource on this node ("" = of all).
    public func cleanupResource(_ name: String) throws(ClientError) {
        try client.call(.heartbeat, Heartbeat1.Method.cleanupResource, [.string(name)])
    }
}

/// org.kusu.Effector1 at /org/kusu/Effector1 (kusu-effectord, bus-activated).
public struct Effector1Proxy {
    let client: ClusterClient

    public func takeover(reason: String) throws(ClientError) {
        try client.call(.effector, Effector1.Method.takeover, [.string(reason)])
    }
    public func release(reason: String) throws(ClientError) {
        try client.call(.effector, Effector1.Method.release, [.string(reason)])
    }
    public func addAddress(_ a: String) throws(ClientError) {
        try client.call(.effector, Effector1.Method.addAddress, [.string(a)])
    }
    public func removeAddress(_ a: String) throws(ClientError) {
        try client.call(.effector, Effector1.Method.removeAddress, [.string(a)])
    }
    public func announceAddress(_ a: String) throws(ClientError) {
        try client.call(.effector, Effector1.Method.announceAddress, [.string(a)])
    }
    public func promoteDatabase() throws(ClientError) { try client.call(.effector, Effector1.Method.promoteDatabase) }
    public func rejoinDatabase(primary: String, progress: @escaping (String) -> Void = { _ in }) throws(ClientError) {
        try client.callShowingProgress(.effector, Effector1.Method.rejoinDatabase, [.string(primary)], timeout: .seconds(3 * 3600), progress: progress)
    }
    /// CloneDatabase(primary, method), printing progress lines; may take long on a large database.
    public func cloneDatabase(primary: String, method: String, progress: @escaping (String) -> Void) throws(ClientError) {
        try client.callShowingProgress(
            .effector, Effector1.Method.cloneDatabase, [.string(primary), .string(method)], timeout: .seconds(6 * 3600), progress: progress)
    }
    public func setSynchronousStandby(_ standby: String) throws(ClientError) {
        try client.call(.effector, Effector1.Method.setSynchronousStandby, [.string(standby)])
    }
    public func startUnits() throws(ClientError) { try client.call(.effector, Effector1.Method.startUnits) }
    public func stopUnits() throws(ClientError) { try client.call(.effector, Effector1.Method.stopUnits) }
}
