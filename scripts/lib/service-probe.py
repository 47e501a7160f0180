#!/usr/bin/env python3
"""Probes the KUSU services through the floating address, as a client would, every PERIOD
seconds until STOP_FILE exists (at most LIMIT seconds): an HTTP GET of /index.txt and a TFTP
read of pxelinux.0, each given TIMEOUT seconds. Prints one line per round:
"NS HTTP TFTP" — CLOCK_REALTIME ns when the round ended, 1/0 per service.

One long-lived process in the client namespace, so a round costs a few milliseconds and an
outage is measured to within about PERIOD + TIMEOUT (the test bed only: addresses 198.18/15).
"""
import os
import socket
import struct
import sys
import time


def http_ok(address, timeout):
    try:
        with socket.create_connection((address, 80), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET /index.txt HTTP/1.0\r\nHost: %s\r\n\r\n" % address.encode())
            data = b""
            while b"\r\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.") and data.split(b" ", 2)[1] == b"200"
    except (OSError, IndexError):
        return False


def tftp_ok(address, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(b"\x00\x01pxelinux.0\x00octet\x00", (address, 69))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            data, peer = s.recvfrom(2048)
            if peer[0] != address or len(data) < 4:
                continue
            opcode, block = struct.unpack("!HH", data[:4])
            if opcode == 3 and block == 1:
                s.sendto(b"\x00\x05\x00\x00done\x00", peer)  # abort politely
                return True
            return False
        return False
    except OSError:
        return False
    finally:
        s.close()


def main():
    address, period, timeout, stop_file, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    end = time.monotonic() + limit
    while time.monotonic() < end and not os.path.exists(stop_file):
        h = http_ok(address, timeout)
        f = tftp_ok(address, timeout)
        print(time.time_ns(), int(h), int(f), flush=True)
        time.sleep(period)


if __name__ == "__main__":
    main()
