#ifndef CSYSTEMD_SHIM_H
#define CSYSTEMD_SHIM_H

// C shim over libsystemd for Swift.
//
// Swift imports the libsystemd functions directly, but it cannot import:
//   - function-like macros (SD_BUS_VTABLE_START, SD_BUS_METHOD_WITH_NAMES, ...), which
//     are designated-initialiser compound literals over a bit-field + union;
//   - variadic functions (sd_bus_message_read, sd_bus_call_method, ...).
// The `csd_` helpers below fill in what Swift cannot express. DBusKit uses only
// non-variadic sd-bus APIs otherwise.

#include <stdint.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-bus-vtable.h>
#include <systemd/sd-event.h>
#include <systemd/sd-daemon.h>   // sd_notify (used outside DBusKit)
#include <systemd/sd-journal.h>  // sd_journal_sendv (used outside DBusKit)
// eventfd(2): DBusKit wakes its sd-event loop from worker threads with one
// (glibc declares it in a header the Glibc module does not export).
#include <sys/eventfd.h>

// SD_BUS_VTABLE_START is a macro (compound literal); it also stamps the vtable
// format reference and the "parameter names" feature bit, which sd-bus checks to
// know the method/signal entries carry a `names` field.
static inline void csd_vtable_start(sd_bus_vtable *v, uint64_t flags) {
    memset(v, 0, sizeof *v);  // unused union bytes must be zero (see sd-bus-vtable.h)
    *v = (sd_bus_vtable) SD_BUS_VTABLE_START(flags);
}

// SD_BUS_METHOD_WITH_NAMES concatenates string literals for `names`; we need
// runtime strings: `names` is the input argument names then the output argument
// names, each terminated by NUL (the caller builds that buffer). Handler is the
// single Swift trampoline; offset 0 so it receives the vtable userdata unchanged.
static inline void csd_vtable_method(sd_bus_vtable *v, const char *member, const char *signature,
                                     const char *result, const char *names,
                                     sd_bus_message_handler_t handler, uint64_t flags) {
    memset(v, 0, sizeof *v);
    v->type = _SD_BUS_VTABLE_METHOD;
    v->flags = flags;
    v->x.method.member = member;
    v->x.method.signature = signature;
    v->x.method.result = result;
    v->x.method.handler = handler;
    v->x.method.offset = 0;
    v->x.method.names = names;
}

// SD_BUS_SIGNAL_WITH_NAMES is a macro; signals only serve introspection here.
static inline void csd_vtable_signal(sd_bus_vtable *v, const char *member, const char *signature,
                                     const char *names, uint64_t flags) {
    memset(v, 0, sizeof *v);
    v->type = _SD_BUS_VTABLE_SIGNAL;
    v->flags = flags;
    v->x.signal.member = member;
    v->x.signal.signature = signature;
    v->x.signal.names = names;
}

// SD_BUS_PROPERTY is a macro; read-only property served by the Swift getter trampoline.
static inline void csd_vtable_property(sd_bus_vtable *v, const char *member, const char *signature,
                                       sd_bus_property_get_t getter, uint64_t flags) {
    memset(v, 0, sizeof *v);
    v->type = _SD_BUS_VTABLE_PROPERTY;
    v->flags = flags;
    v->x.property.member = member;
    v->x.property.signature = signature;
    v->x.property.get = getter;
    v->x.property.set = NULL;
    v->x.property.offset = 0;
}

// SD_BUS_VTABLE_END is a macro.
static inline void csd_vtable_end(sd_bus_vtable *v) {
    memset(v, 0, sizeof *v);
    *v = (sd_bus_vtable) SD_BUS_VTABLE_END;
}

// The SD_BUS_VTABLE_* flag enumerators are declared in an `__extension__ enum`
// with 64-bit values, which Swift does not import reliably; expose them as functions.
static inline uint64_t csd_flag_unprivileged(void) { return SD_BUS_VTABLE_UNPRIVILEGED; }
static inline uint64_t csd_flag_deprecated(void) { return SD_BUS_VTABLE_DEPRECATED; }
static inline uint64_t csd_flag_hidden(void) { return SD_BUS_VTABLE_HIDDEN; }
static inline uint64_t csd_flag_no_reply(void) { return SD_BUS_VTABLE_METHOD_NO_REPLY; }
static inline uint64_t csd_flag_property_const(void) { return SD_BUS_VTABLE_PROPERTY_CONST; }
static inline uint64_t csd_flag_property_emits_change(void) { return SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE; }
static inline uint64_t csd_flag_property_emits_invalidation(void) { return SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION; }

// sizeof(sd_bus_vtable), so Swift can allocate zeroed vtable arrays with calloc
// without depending on how it imports the bit-field/union layout.
static inline size_t csd_vtable_size(void) { return sizeof(sd_bus_vtable); }

#endif
