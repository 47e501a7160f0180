// CNetlink — the kernel headers kusu-effectord's network side needs, plus the few
// helpers Swift cannot express itself. Everything else (NLMSG_ALIGN, RTA_*, the
// message layouts) is reimplemented in Swift with bounds checks.
#ifndef KUSU_CNETLINK_H
#define KUSU_CNETLINK_H

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <netinet/icmp6.h>
#include <linux/if_addr.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

/// Interface hardware address through SIOCGIFHWADDR, on `fd` (so in the fd's network namespace).
/// A C helper because ioctl(2) is variadic (Swift cannot call it) and `struct ifreq` is a union
/// reached through macros (`ifr_hwaddr`). Copies at most 6 bytes into `mac`, stores the ARPHRD_*
/// type in `*hwtype`. Returns 0, or -1 with errno set (ENODEV: no such interface).
static inline int cnl_interface_hwaddr(int fd, const char *name, unsigned char mac[6], unsigned short *hwtype) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    size_t n = strnlen(name, IFNAMSIZ);
    if (n == 0 || n >= IFNAMSIZ) { errno = ENODEV; return -1; }
    memcpy(ifr.ifr_name, name, n);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) return -1;
    *hwtype = ifr.ifr_hwaddr.sa_family;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

/// Interface index through SIOCGIFINDEX on `fd` (the fd's network namespace, unlike
/// if_nametoindex(3), which opens its own socket). A C helper for the same reasons as above.
/// Returns the index (> 0), or -1 with errno set.
static inline int cnl_interface_index(int fd, const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    size_t n = strnlen(name, IFNAMSIZ);
    if (n == 0 || n >= IFNAMSIZ) { errno = ENODEV; return -1; }
    memcpy(ifr.ifr_name, name, n);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) return -1;
    return ifr.ifr_ifindex;
}

/// setns(fd, CLONE_NEWNET) for the calling thread. Defined in CNetlink.c: setns and CLONE_NEWNET
/// are declared only under _GNU_SOURCE, which the Glibc module Swift imports does not define.
/// Used by the tests (a dedicated pthread joins a test namespace). Returns 0 or -1 with errno.
int cnl_enter_network_namespace(int fd);

#endif
