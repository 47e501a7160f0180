// kusu-hbd's working loop: heartbeats out, heartbeats in, the peer's health on the bus.
//
// Everything here runs on the one thread that runs the sd-event loop: the UDP
// sockets, the timers and the bus connection are all sources of that loop, so
// there is no locking and a wedged loop stops the watchdog pings. The decisions
// live in ClusterCore.PeerTracker (pure, tested with a virtual clock); this type
// feeds it packets and time and turns its events into bus signals and log lines.
import ClusterAPI
public import ClusterCore
public import DBusKit
import Glibc
public import Logging
public import SystemSupport

public final class HeartbeatMonitor {
    let configuration: Configuration
    let key: HeartbeatKey
    let loop: EventLoop
    let bus: BusConnection
    let store: StateStore
    let logger: Logger

    var tracker: PeerTracker
    var sockets: [HeartbeatSocket] = []
    let generation: UInt64
    var sequence: UInt64 = 0
    /// This node's role and epoch (persisted through `store`).
    var roles: RoleMachine
    var role: NodeRole { roles.role }
    /// The operator's switches (persisted; auto-failover defaults to the configuration).
    var autoFailover: Bool
    var maintenance: Bool
    /// What the effector last said (nil until it answered).
    var effector = EffectorView()
    var effectorPoll: TimerSource?
    /// `[database] synchronous`: what commits wait for while this node is active (nil without a database).
    var replicationGuard: ReplicationGuard?
    /// A SetSynchronousStandby call is under way.
    var settingSynchronous = false
    /// What the Synchronous property last said, to signal changes only.
    var lastSynchronous = ""
    /// When (CLOCK_REALTIME µs) the peer last came back from dead: a replication
    /// connection older than that is a dead standby's, lingering until wal_sender_timeout.
    var peerBackSinceUSec: UInt64 = 0
    /// Pings cluster.tie_breakers (unprivileged ICMP echo); nil before start.
    var tieBreaker: TieBreakerProbe?
    /// The last refusal logged by the automatic decision, so it is logged once, not per heartbeat.
    var lastAutomaticRefusal: SwitchRefusal?
    /// A RejoinDatabase call is under way; after a failure, not before this instant.
    var rejoining = false
    /// An address probe is under way before an automatic takeover; a later look is scheduled.
    var probing = false
    /// The address probe started when the peer turned late, so that a takeover at "dead" need
    /// not wait for one (nil: none; a new one per late episode).
    var earlyProbe: EarlyProbe?
    var earlyProbeCount: UInt64 = 0
    var reevaluation: TimerSource?
    /// Switchover: the final LSN this node advertises after handing the active role over.
    var handoverLSN: UInt64? {
        didSet {
            handoverAt = handoverLSN == nil ? nil : oldValue == nil ? loop.now : handoverAt
            if (handoverLSN == nil) != (oldValue == nil) { sendHeartbeats(rescheduling: false) }
        }
    }
    /// When the final LSN was first advertised (nil: no handover under way).
    var handoverAt: Duration?
    /// A handover the peer did not complete was withdrawn at this instant: the role is taken
    /// back once the peer has had the dead time to notice (nil: none).
    var reclaimAt: Duration?
    /// Switchover: whether our primary waited for the peer's standby on every commit when the
    /// handover began (said in heartbeats until it completes, though no longer active).
    var handoverSynchronous: Bool?
    /// What PeerTieBreakerReachable last said, to signal changes only.
    var lastPeerReachesTieBreaker = false
    /// The last service-loss refusal logged while the tie-breakers are unreachable.
    var lastServiceLossRefusal: SwitchRefusal?
    /// The standby's side of a switchover: when the peer's handover was first heard, and
    /// whether a WaitForReplay call is under way.
    var handoverSeenAt: Duration?
    var waitingForReplay = false
    /// After a failed WaitForReplay: the next one not before this instant.
    var handoverRetryAt: Duration = .zero
    /// The final LSN of a handover whose takeover failed here and was given back: not followed
    /// again, and no startup election meanwhile (the peer takes the role back). Cleared when
    /// the peer is active or this node takes over.
    var gaveRoleBackAtLSN: UInt64?
    /// A takeover that takes the role back after a handover the peer never completed.
    var takingBack = false
    /// The last refusal of the peer's switchover request that was logged.
    var lastHandoverRefusal: SwitchRefusal?
    /// Switchover asked on this (standby) node: ask the peer in heartbeats until this instant.
    var requestSwitchoverUntil: Duration?
    /// The operator's Switchover call, answered when the handover completes.
    var switchoverCall: MethodInvocation?
    var nextRejoinAttempt: Duration = .zero
    /// This node handed the active role over with a clean stop of its database at the final
    /// LSN: once the peer is active, the database follows it without a copy (FollowDatabase).
    var stoppedCleanlyInHandover = false
    /// When the database was made to follow the peer without a copy (nil: not since, or it streams).
    var followedAt: Duration?
    /// The health of what this node serves (see HeartbeatMonitor+Health.swift).
    var health: ServiceHealth
    var checkRunners: [CheckRunner] = []
    var healthTimer: TimerSource?
    var effectorSignals: Subscription?
    /// What the Resources, ServiceReady and PeerServiceReady properties last said, to signal changes only.
    var lastResources: [ResourceEntry] = []
    var lastServiceReady: (ready: Bool, reason: String) = (false, "")
    var lastPeerServiceReady = false
    /// CLOCK_REALTIME µs of each resource's last counted failure (for Resources).
    var lastFailureUSec: [String: UInt64] = [:]
    /// The last refusal of a service-fault handover that was logged.
    var lastServiceFaultRefusal: SwitchRefusal?
    /// An operator's cleanup, told to the peer in heartbeats until `until`.
    var cleanupAnnouncement: (cleanup: ResourceCleanup, until: Duration)?
    /// The peer's last cleanup request applied here.
    var lastPeerCleanupID: UInt64?
    let polkit: PolkitAuthority
    var packetsReceived: UInt64 = 0
    var packetsRejected: UInt64 = 0
    var receiveBuffer = [UInt8](repeating: 0, count: 2048)

    var sendTimer: TimerSource?
    var nextSend: Duration = .zero
    var deadlineTimer: TimerSource?
    var readers: [EventSource] = []
    var pendingChanges: Set<String> = []
    var flush: EventSource?
    var rejectionLog = RejectionLog()
    /// Errors already reported per link, so a down link logs once, not five times a second.
    var sendFailures: [Int: Int32] = [:]
    var peerGenerationTried: UInt64 = 0

    let path: ObjectPath
    let interface: InterfaceName

    /// Prepares the monitor; nothing is sent or exported until `start()`.
    public init(
        configuration: Configuration, key: HeartbeatKey, loop: EventLoop, bus: BusConnection,
        store: StateStore, logger: Logger
    ) throws(FileError) {
        self.configuration = configuration
        self.key = key
        self.loop = loop
        self.bus = bus
        self.store = store
        self.logger = logger
        // The boot generation increases on every start, even if the wall clock went back.
        let generation = max(wallClockMicroseconds(), store.state.generation + 1)
        try store.update { $0.generation = generation }
        self.generation = generation
        roles = RoleMachine(epoch: store.state.epoch)
        autoFailover = store.state.autoFailover ?? configuration.cluster.autoFailover
        maintenance = store.state.maintenance
        polkit = PolkitAuthority(bus: bus)
        replicationGuard = configuration.database.map {
            ReplicationGuard(
                mode: $0.synchronous, standbyName: configuration.peerNode.name, absenceLimit: configuration.cluster.dead,
                maxLagBytes: $0.maxLagBytes)
        }
        health = ServiceHealth(resources: ResourceSpec.all(in: configuration), policy: .init(configuration.health))
        tracker = PeerTracker(
            cluster: configuration.cluster.name, peer: configuration.peerNode.name,
            linkCount: configuration.linkCount,
            timing: .init(interval: configuration.cluster.interval, warn: configuration.cluster.warn, dead: configuration.cluster.dead),
            start: MonotonicInstant(loop.now), minimumGeneration: store.state.peerGeneration)
        path = ObjectPath(stringLiteral: Heartbeat1.objectPath)  // constants of the contract: valid names
        interface = InterfaceName(stringLiteral: Heartbeat1.interface)
    }

    /// Opens the heartbeat sockets, exports the bus object, takes the bus name and starts the timers.
    public func start(passedSockets: [Int32]) throws(MonitorError) {
        do {
            if passedSockets.isEmpty {
                let families = Set(configuration.localNode.addresses.map(\.isIPv4))
                for isIPv4 in families.sorted(by: { $0 && !$1 }) {
                    sockets.append(try HeartbeatSocket(ipv6: !isIPv4, port: configuration.cluster.port))
                }
            } else {
                for fd in passedSockets { sockets.append(try HeartbeatSocket(adopting: fd)) }
            }
        } catch {
            throw MonitorError("cannot open the heartbeat socket: \(error)")
        }
        do {
            for socket in sockets {
                readers.append(try loop.addReadable(fd: socket.fd) { [unowned self] in self.receiveAll(from: socket) })
            }
            try bus.export(makeBusObject())
            try bus.requestName(try BusName(Heartbeat1.busName))
            nextSend = loop.now
            sendTimer = try loop.addTimer(at: nextSend, accuracy: .microseconds(500)) { [unowned self] in self.sendHeartbeats() }
            armDeadline()
            effectorSignals = try followEffectorSignals()
            effectorPoll = try loop.addTimer(at: loop.now) { [unowned self] in self.pollEffector() }
            armHealthTimer()
            let probeInterval = configuration.cluster.tieBreakerInterval
            tieBreaker = try TieBreakerProbe(
                targets: configuration.cluster.tieBreakers, loop: loop, interval: probeInterval, window: probeInterval * 3, logger: logger
            ) { [unowned self] _ in
                changed(Heartbeat1.Property.tieBreakerReachable)
                evaluateAutomatic()  // a failover refused for a silent tie-breaker goes ahead once one answers
                evaluateServiceLoss()
            }
            tieBreaker?.start()
        } catch {
            throw MonitorError("cannot start: \(error)")
        }
        logger.notice(
            "kusu-hbd started",
            metadata: [
                "cluster.name": "\(configuration.cluster.name)", "node.name": "\(configuration.localNode.name)",
                "peer.name": "\(configuration.peerNode.name)", "node.role": "\(role.rawValue)",
                "hb.generation": "\(generation)", "hb.links": "\(configuration.linkCount)",
                "hb.interval_ms": "\(configuration.cluster.interval.wholeMilliseconds)",
                "hb.dead_ms": "\(configuration.cluster.dead.wholeMilliseconds)",
            ])
    }

    // MARK: Sending

    /// Sends one heartbeat on every link. The timer sends them at the interval; a change the peer
    /// acts on (this node's role, a handover given or withdrawn) is sent at once as well
    /// (`rescheduling: false`), so the peer never decides on a state up to an interval old.
    func sendHeartbeats(rescheduling: Bool = true) {
        sequence += 1
        let now = wallClockMicroseconds()
        for (link, peerAddress) in configuration.peerNode.addresses.enumerated() {
            let heartbeat = Heartbeat(
                kind: .heartbeat, role: role, link: UInt8(link),
                autoFailover: autoFailover, maintenance: maintenance,
                generation: generation, sequence: sequence, epoch: roles.epoch, lsn: handoverLSN ?? effector.lsn ?? 0,
                sentAt: now, cluster: configuration.cluster.name, node: configuration.localNode.name,
                handover: handoverLSN != nil, switchoverRequested: (requestSwitchoverUntil ?? .zero) > loop.now,
                synchronous: handoverSynchronous ?? peerHasEveryCommit, reachesTieBreaker: reachesTieBreaker,
                serviceReady: serviceReadiness.ready, gaveUp: health.givenUp(at: MonotonicInstant(loop.now)),
                cleanup: cleanupAnnouncement.flatMap { $0.until > loop.now ? $0.cleanup : nil },
                handoverClean: handoverLSN != nil && stoppedCleanlyInHandover)
            let packet = HeartbeatCodec.encode(heartbeat, key: key)
            guard let socket = sockets.first(where: { $0.carries(peerAddress) && $0.isIPv6 != peerAddress.isIPv4 })
                ?? sockets.first(where: { $0.carries(peerAddress) })
            else { continue }
            let failure = socket.send(packet, to: peerAddress, port: configuration.cluster.port)
            if failure != sendFailures[link] {
                if let failure {
                    logger.warning(
                        "cannot send heartbeats on a link",
                        metadata: ["hb.link": "\(link)", "peer.address": "\(peerAddress)", "error": "\(String(cString: strerror(failure)))"])
                } else {
                    logger.info("sending heartbeats on the link again", metadata: ["hb.link": "\(link)"])
                }
                sendFailures[link] = failure
            }
        }
        guard rescheduling else { return }
        // Keep a steady cadence; after a stall (SIGSTOP, a loaded machine) resume without a burst.
        nextSend += configuration.cluster.interval
        let now2 = loop.now
        if nextSend <= now2 { nextSend = now2 + configuration.cluster.interval }
        sendTimer?.reschedule(at: nextSend)
    }

    // MARK: Receiving

    func receiveAll(from socket: HeartbeatSocket) {
        // Bounded, so a flood cannot starve the timers; the level-triggered source calls us again.
        for _ in 0..<64 {
            guard let (count, source) = socket.receive(into: &receiveBuffer) else { break }
            handleDatagram(count: count, source: source)
        }
        armDeadline()
    }

    /// Reads every heartbeat already queued on the sockets (before a decision that must not
    /// rest on an old packet).
    func drainHeartbeats() {
        for socket in sockets { receiveAll(from: socket) }
    }

    func handleDatagram(count: Int, source: IPAddress?) {
        guard count <= receiveBuffer.count else { return reject(.malformed, source: source) }
        guard let source, let link = configuration.peerNode.addresses.firstIndex(of: source) else {
            return reject(.unknownSender, source: source)
        }
        let heartbeat: Heartbeat
        switch HeartbeatCodec.decode(Array(receiveBuffer[0..<count]), key: key) {
        case .success(let decoded): heartbeat = decoded
        case .failure(let reason): return reject(reason, source: source)
        }
        let now = MonotonicInstant(loop.now)
        switch tracker.receive(heartbeat, onLink: link, at: now, wallClock: wallClockMicroseconds()) {
        case .failure(let reason):
            reject(reason, source: source)
        case .success(let events):
            packetsReceived += 1
            handle(events)
        }
    }

    func reject(_ reason: PacketRejection, source: IPAddress?) {
        packetsRejected += 1
        if let suppressed = rejectionLog.shouldLog(reason, at: loop.now) {
            logger.warning(
                "heartbeat packet rejected",
                metadata: [
                    "hb.reason": "\(reason.rawValue)", "hb.source": "\(source.map { "\($0)" } ?? "unknown")",
                    "hb.suppressed": "\(suppressed)", "hb.rejected_total": "\(packetsRejected)",
                ])
        }
    }

    // MARK: Time

    func armDeadline() {
        guard let deadline = tracker.nextDeadline else {
            deadlineTimer?.cancel()
            deadlineTimer = nil
            return
        }
        if let deadlineTimer {
            deadlineTimer.reschedule(at: deadline.sinceOrigin)
        } else {
            deadlineTimer = try? loop.addTimer(at: deadline.sinceOrigin, accuracy: .microseconds(100)) { [unowned self] in
                self.handle(self.tracker.advance(to: MonotonicInstant(self.loop.now)))
                self.armDeadline()
            }
        }
    }

    // MARK: Events → bus and journal

    func handle(_ events: [PeerEvent]) {
        for event in events {
            switch event {
            case .stateChanged(let old, let new):
                // (Not from unknown: at our own start the standby's connection may well be older.)
                if new == .alive && old == .dead { peerBackSinceUSec = wallClockMicroseconds() }
                logger.notice(
                    "peer state changed",
                    metadata: [
                        "peer.name": "\(configuration.peerNode.name)", "peer.state.old": "\(old.rawValue)", "peer.state": "\(new.rawValue)",
                        "message.id": "\(MessageID.peerState)",
                    ])
                changed(Heartbeat1.Property.peerState)
                do {
                    try bus.emitSignal(
                        path: path, interface: interface, member: try MemberName(Heartbeat1.Signal.peerStateChanged),
                        [.string(configuration.peerNode.name), .string(old.rawValue), .string(new.rawValue)])
                } catch {
                    logger.error("cannot emit a signal", metadata: ["error": "\(error)"])
                }
                ServiceManager.notify("STATUS=\(role.rawValue); peer \(configuration.peerNode.name) is \(new.rawValue)")
                if new == .late || new == .dead { tieBreaker?.probeNow() }
                if new == .late { startEarlyAddressProbe() } else if new == .alive { earlyProbe = nil }
                evaluateAutomatic()
                evaluateReplication()
            case .linkChanged(let link, let up):
                logger.notice(
                    up ? "heartbeat link up" : "heartbeat link down",
                    metadata: ["hb.link": "\(link)", "peer.address": "\(configuration.peerNode.addresses[link])"])
                changed(Heartbeat1.Property.links)
            case .restarted(let peerGeneration):
                logger.info("peer restarted", metadata: ["peer.name": "\(configuration.peerNode.name)", "hb.generation": "\(peerGeneration)"])
            case .roleChanged:
                changed(Heartbeat1.Property.peerRole)
                resolveTwoActives()
                switchoverProgress()
                evaluateFailedRole()
                evaluateAutomatic()
            case .epochChanged(let peerEpoch):
                changed(Heartbeat1.Property.peerEpoch)
                execute(roles.observe(peerEpoch: peerEpoch))
                resolveTwoActives()
            case .seen:
                changed(Heartbeat1.Property.peerLastSeenUSec)
                changed(Heartbeat1.Property.links)
                if tracker.peerSwitchoverRequested && role == .active && handoverLSN == nil && handoverSynchronous == nil
                    && switchoverCall == nil
                {
                    if let refusal = handoverRefusal {
                        if refusal != lastHandoverRefusal {
                            lastHandoverRefusal = refusal
                            logger.warning(
                                "the standby asks for a switchover, refused",
                                metadata: ["peer.name": "\(configuration.peerNode.name)", "reason": "\(refusal)"])
                        }
                    } else {
                        lastHandoverRefusal = nil
                        beginHandover(call: nil)
                    }
                }
                if tracker.peerHandover {
                    if role == .standby && tracker.peerRole == .standby { evaluateAutomatic() }
                } else {
                    handoverSeenAt = nil
                }
                if tracker.peerReachesTieBreaker != lastPeerReachesTieBreaker {
                    lastPeerReachesTieBreaker = tracker.peerReachesTieBreaker
                    changed(Heartbeat1.Property.peerTieBreakerReachable)
                }
                evaluateServiceLoss()
                if let cleanup = tracker.peerCleanup, cleanup.id != lastPeerCleanupID {
                    lastPeerCleanupID = cleanup.id
                    peerAskedForCleanup(cleanup)
                }
                // The peer's readiness and what it gave up may have changed.
                publishResources()
                evaluateServiceFault()
            }
        }
        persistPeerGeneration()
    }

    /// Remembers the highest generation accepted from the peer, so that after our own
    /// restart packets replayed from an older peer generation are still refused.
    /// Written only when it grows: once per peer start, not per packet.
    func persistPeerGeneration() {
        guard let heard = tracker.peerGeneration, heard > store.state.peerGeneration, heard != peerGenerationTried
        else { return }
        peerGenerationTried = heard  // a failing disk is reported once per generation, not per packet
        do {
            try store.update { $0.peerGeneration = heard }
        } catch {
            logger.error("cannot persist the peer's generation", metadata: ["error": "\(error)"])
        }
    }

    /// Marks a property changed; all changes of one loop iteration go out in one PropertiesChanged.
    func changed(_ property: String) {
        pendingChanges.insert(property)
        guard flush == nil else { return }
        flush = try? loop.addDeferred { [unowned self] in
            self.flush = nil
            let names = self.pendingChanges.sorted()
            self.pendingChanges.removeAll()
            do {
                try self.bus.emitPropertiesChanged(path: self.path, interface: self.interface, names)
            } catch {
                self.logger.error("cannot emit PropertiesChanged", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Says goodbye: STOPPING=1, then the loop ends.
    public func stop() {
        logger.notice("kusu-hbd stopping", metadata: ["node.name": "\(configuration.localNode.name)"])
        ServiceManager.notify("STOPPING=1")
        tieBreaker?.stop()
        stopChecks()
        loop.exit(code: 0)
    }
}

public struct MonitorError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// At most one log line per rejection reason per ten seconds, with the count of the ones not logged.
struct RejectionLog {
    var last: [PacketRejection: (at: Duration, suppressed: Int)] = [:]

    mutating func shouldLog(_ reason: PacketRejection, at now: Duration) -> Int? {
        if let entry = last[reason], now - entry.at < .seconds(10) {
            last[reason] = (entry.at, entry.suppressed + 1)
            return nil
        }
        let suppressed = last[reason]?.suppressed ?? 0
        last[reason] = (now, 0)
        return suppressed
    }
}

