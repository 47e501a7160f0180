// The database's health, as the effector observes it: a query every `[health]
// database_interval_ms` on a worker thread, one at a time, judged by ClusterCore.AnswerWatch
// (a hung query is not waited for: the verdict turns at the deadline). kusu-hbd decides what
// to do about it; the effector only publishes `DatabaseHealth`.
import ClusterCore
import DBusKit
import Logging

extension Effector {
    // MARK: Database health

    /// Starts the health query of the database: every `[health] database_interval_ms` on a
    /// worker thread, one at a time; `DatabaseHealth` says whether one answered within
    /// `database_timeout_ms` (a hung query is not waited for: the verdict turns at the deadline).
    public func startDatabaseHealth() {
        guard database != nil else { return }
        healthWatch = AnswerWatch(timeout: configuration.health.databaseTimeout, start: MonotonicInstant(loop.now))
        healthTimer = try? loop.addTimer(at: loop.now) { [weak self] in self?.queryDatabaseHealth() }
        healthDeadline = try? loop.addTimer(at: loop.now + configuration.health.databaseTimeout) { [weak self] in
            self?.evaluateDatabaseHealth()
        }
    }

    func queryDatabaseHealth() {
        healthTimer?.reschedule(at: loop.now + configuration.health.databaseInterval)
        evaluateDatabaseHealth()
        guard let database, let watch = healthWatch, watch.pendingSince == nil else { return }
        healthWatch?.began(at: MonotonicInstant(loop.now))
        let timeout = configuration.health.databaseTimeout
        do {
            try loop.perform({ database.healthQuery(timeout: timeout) }) { [weak self] error in
                guard let self else { return }
                let now = MonotonicInstant(loop.now)
                if let error {
                    healthWatch?.failed(error, at: now)
                } else {
                    healthWatch?.answered(at: now)
                    databaseHealth.lastAnswerUSec = wallClock()
                }
                evaluateDatabaseHealth()
            }
        } catch {
            healthWatch?.failed("cannot start a worker thread: \(error)", at: MonotonicInstant(loop.now))
        }
    }

    /// An operation started the database (a takeover of a stopped one, a rejoin, a follow): its
    /// health gets a fresh grace of one timeout, as at the effector's start.
    func databaseStarted() {
        healthWatch?.restarted(at: MonotonicInstant(loop.now))
        evaluateDatabaseHealth()
    }

    func evaluateDatabaseHealth() {
        guard let watch = healthWatch else { return }
        let now = MonotonicInstant(loop.now)
        let answering = watch.answering(at: now)
        let detail = watch.detail(at: now)
        if answering { healthDeadline?.reschedule(at: watch.deadline.sinceOrigin) }
        guard answering != databaseHealth.answering || detail != databaseHealth.detail else { return }
        if answering != databaseHealth.answering {
            if answering {
                logger.notice("the database answers again")
            } else {
                logger.warning("the database does not answer", metadata: ["pg.health": "\(detail)"])
            }
        }
        databaseHealth.answering = answering
        databaseHealth.detail = detail
        changed([.databaseHealth])
    }
}
