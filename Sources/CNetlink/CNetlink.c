// The only out-of-line helper: setns(2) needs _GNU_SOURCE, set here for this file alone.
#define _GNU_SOURCE
#include <sched.h>
#include "CNetlink.h"

int cnl_enter_network_namespace(int fd) {
    return setns(fd, CLONE_NEWNET);
}
