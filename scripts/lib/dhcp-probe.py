#!/usr/bin/env python3
"""A DHCPDISCOVER on an interface; prints "OFFER <offered address> <server identifier>".

usage: dhcp-probe.py IFACE [TIMEOUT_S=2]
Runs as root in the client's network namespace (binds port 68, broadcasts to
255.255.255.255:67 on IFACE only). Exit status 1 when no offer arrives in time.
It never takes the lease (no REQUEST): it only checks that a DHCP server answers.
"""
import os
import random
import socket
import struct
import sys
import time


def discover(iface, xid, mac):
    packet = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                         b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"\0" * 64, b"\0" * 128)
    options = b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\x37\x03\x01\x03\x42" + b"\xff"
    return packet + options


def parse(data, xid):
    if len(data) < 240 or data[0] != 2 or struct.unpack("!I", data[4:8])[0] != xid:
        return None
    offered = socket.inet_ntoa(data[16:20])
    i, kind, server = 240, None, None
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, length = data[i], data[i + 1]
        value = data[i + 2:i + 2 + length]
        if code == 53:
            kind = value[0]
        elif code == 54 and length == 4:
            server = socket.inet_ntoa(value)
        i += 2 + length
    return (offered, server) if kind == 2 else None


def main():
    iface = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    with open(f"/sys/class/net/{iface}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    xid = random.getrandbits(32)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.bind(("0.0.0.0", 68))
    deadline = time.monotonic() + timeout
    s.sendto(discover(iface, xid, mac), ("255.255.255.255", 67))
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print("no offer", file=sys.stderr)
            return 1
        s.settimeout(left)
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            continue
        offer = parse(data, xid)
        if offer:
            print(f"OFFER {offer[0]} {offer[1]}")
            return 0


if __name__ == "__main__":
    sys.exit(main())
