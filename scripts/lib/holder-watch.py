#!/usr/bin/env python3
"""Who holds the floating address, every PERIOD_S, from two sides (scripts/lib/faultlib.sh).

usage: holder-watch.py NETNS_A NETNS_B NETNS_CLIENT CLIENT_IP ADDRESS PERIOD_S CUT_DIR
                       STOP_FILE MAX_S SAMPLES_FILE ARPS_FILE

One process, no fork per sample: a netlink socket opened in each node's network namespace
(they are the test bed's and outlive the containers, so a node that returns after a crash is
read like any other) and a raw ARP socket opened in the client's. Each round:

- the nodes: an RTM_GETADDR dump of both namespaces, one line in SAMPLES_FILE
      T_BEFORE T_AFTER HOLDER
  (ns, CLOCK_REALTIME; both dumps were taken between the two; HOLDER is a, b, both, none, or
  error when a dump failed). A node for which CUT_DIR/cut-a (cut-b) exists holds nothing: its
  links are cut (pair_crash), it serves nobody.
- the network: an ARP request "who has ADDRESS, tell CLIENT_IP" broadcast from the client's
  eth0; one line in ARPS_FILE
      T_NS MAC[,MAC...]
  with the distinct MACs that answered it within REPLY_WINDOW_S ("-": nobody). The request
  reaches every node at once and a kernel holding the address answers at once, so two MACs
  for one request are two holders as clients see them. Later replies are dropped: a slow
  answer is never taken for a second holder of the next request.

Ends when STOP_FILE exists or after MAX_S. Needs root (setns, raw socket).
"""
import ctypes
import os
import select
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
RTM_NEWADDR, RTM_GETADDR, NLMSG_DONE, NLMSG_ERROR = 20, 22, 3, 2
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
REPLY_WINDOW_S = 0.02

libc = ctypes.CDLL(None, use_errno=True)


def in_netns(name: str, make):
    """Calls make() inside network namespace /run/netns/NAME and returns to this one."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            return make()
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(home)


def netlink() -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    s.settimeout(1.0)
    return s


def holds(sock: socket.socket, seq: int, address: bytes) -> bool:
    """An RTM_GETADDR dump (IPv4): does any interface of the namespace hold ADDRESS?"""
    request = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    request += struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)
    sock.send(request)
    found = False
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _, rseq, _ = struct.unpack_from("=IHHII", data, offset)
            if length < 16:
                raise OSError("bad netlink message")
            if rseq == seq:
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    raise OSError("netlink error")
                if kind == RTM_NEWADDR:
                    at = offset + 16 + 8
                    end = offset + length
                    while at + 4 <= end:
                        alen, atype = struct.unpack_from("=HH", data, at)
                        if alen < 4:
                            break
                        if atype in (IFA_ADDRESS, IFA_LOCAL) and data[at + 4:at + alen] == address:
                            found = True
                        at += (alen + 3) & ~3
            offset += (length + 3) & ~3


def main() -> int:
    if len(sys.argv) != 12:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    ns_a, ns_b, ns_c, client, address = sys.argv[1:6]
    period, cut_dir, stop, max_s = float(sys.argv[6]), sys.argv[7], sys.argv[8], float(sys.argv[9])
    samples = open(sys.argv[10], "a", buffering=1)
    arps = open(sys.argv[11], "a", buffering=1)
    vip, spa = socket.inet_aton(address), socket.inet_aton(client)

    def arp_socket():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
        s.bind(("eth0", 0x0806))
        return s

    nodes = {"a": in_netns(ns_a, netlink), "b": in_netns(ns_b, netlink)}
    arp = in_netns(ns_c, arp_socket)
    mac = arp.getsockname()[4]
    request = (b"\xff" * 6 + mac + b"\x08\x06"
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + spa + b"\x00" * 6 + vip)
    deadline = time.monotonic() + max_s
    seq = 0
    while time.monotonic() < deadline and not os.path.exists(stop):
        round_start = time.monotonic()
        # The nodes, as their kernels say.
        t0 = time.time_ns()
        held = {}
        for name, sock in nodes.items():
            seq += 1
            try:
                held[name] = holds(sock, seq, vip) and not os.path.exists(f"{cut_dir}/cut-{name}")
            except OSError as error:
                held[name] = None
                print(f"{time.time_ns()} {name}: {error}", file=sys.stderr, flush=True)
        t1 = time.time_ns()
        if None in held.values():
            holder = "error"
        else:
            holder = {(True, False): "a", (False, True): "b", (True, True): "both"}.get((held["a"], held["b"]), "none")
        samples.write(f"{t0} {t1} {holder}\n")
        # The network, as a client sees it.
        sent_ns, sent = time.time_ns(), time.monotonic()
        arp.send(request)
        macs: list[str] = []
        while True:
            left = sent + REPLY_WINDOW_S - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([arp], [], [], left)
            if not ready:
                break
            frame = arp.recv(128)
            if len(frame) < 42:
                continue
            op = struct.unpack("!H", frame[20:22])[0]
            sha, sender, tha, target = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
            if op == 2 and sender == vip and target == spa and tha == mac:
                text = sha.hex(":")
                if text not in macs:
                    macs.append(text)
        # Replies that came after the window are read and dropped before the next request.
        for _ in range(1000):
            if not select.select([arp], [], [], 0)[0]:
                break
            arp.recv(128)
        arps.write(f"{sent_ns} {','.join(macs) or '-'}\n")
        time.sleep(max(0.0, period - (time.monotonic() - round_start)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
