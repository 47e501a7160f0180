// posix_spawn attributes for the programs the daemons and the CLI start (fencing, rsync).
public import Glibc

/// Gives a child of a process that blocks signals for its signalfd an empty signal mask and
/// default dispositions, and with `newProcessGroup` its own process group (so that a kill of
/// the group also reaches its helpers). `attributes` must be initialised.
public func resetSignals(of attributes: inout posix_spawnattr_t, newProcessGroup: Bool) {
    var none = sigset_t()
    sigemptyset(&none)
    var all = sigset_t()
    sigfillset(&all)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &all)
    var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
    if newProcessGroup {
        posix_spawnattr_setpgroup(&attributes, 0)
        flags |= POSIX_SPAWN_SETPGROUP
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))
}
