#!/usr/bin/env python3
"""A flood of D-Bus method calls that need authorization, from an unprivileged user.

usage: dbus-flood.py SOCKET SECONDS CONNECTIONS DEST PATH INTERFACE MEMBER [DEST PATH INTERFACE MEMBER ...]

Opens CONNECTIONS connections to the bus at SOCKET (as the calling user: run it with
setpriv/runuser), and for SECONDS sends the given argument-less method calls back to back on
every connection, pipelined: up to WINDOW (64) calls without a reply per connection, below
dbus-daemon's own limit of pending replies, so every call reaches the daemon and waits there
for its answer — the most authorization checks an unprivileged user can keep asking for.
Prints one line at the end:

    sent N answered A limits-exceeded L access-denied D

A minimal client of the wire protocol (AUTH EXTERNAL, Hello, little-endian METHOD_CALL
messages), written for the test bed: no D-Bus library needed in the nodes.
"""
import os
import select
import socket
import struct
import sys
import time

WINDOW = 64


def pad(data: bytes, alignment: int) -> bytes:
    return data + b"\0" * (-len(data) % alignment)


def method_call(serial: int, destination: str, path: str, interface: str, member: str) -> bytes:
    fields = b""
    for code, signature, value in ((1, b"o", path), (2, b"s", interface), (3, b"s", member), (6, b"s", destination)):
        fields = pad(fields, 8)
        encoded = value.encode()
        field = bytes([code, 1]) + signature + b"\0"
        field = pad(field, 4) + struct.pack("<I", len(encoded)) + encoded + b"\0"
        fields += field
    header = b"l" + bytes([1, 0, 1]) + struct.pack("<II", 0, serial) + struct.pack("<I", len(fields))
    return pad(header + fields, 8)


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    uid = str(os.getuid()).encode().hex().encode()
    sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
    if not sock.recv(4096).startswith(b"OK"):
        raise OSError("authentication refused")
    sock.sendall(b"BEGIN\r\n")
    sock.sendall(method_call(1, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello"))
    sock.setblocking(False)
    return sock


def main() -> int:
    if len(sys.argv) < 8 or (len(sys.argv) - 4) % 4 != 0:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path, seconds, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    calls = [tuple(sys.argv[i:i + 4]) for i in range(4, len(sys.argv), 4)]
    connections = [connect(path) for _ in range(count)]
    serials = {sock: 2 for sock in connections}
    answered = {sock: 0 for sock in connections}
    buffers = {sock: bytearray() for sock in connections}
    sent = 0
    counts = {"LimitsExceeded": 0, "AccessDenied": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and connections:
        for sock in list(connections):
            if serials[sock] - 2 - answered[sock] >= WINDOW:
                continue
            destination, object_path, interface, member = calls[serials[sock] % len(calls)]
            try:
                sock.send(method_call(serials[sock], destination, object_path, interface, member))
                serials[sock] += 1
                sent += 1
            except BlockingIOError:
                pass
            except OSError:
                connections.remove(sock)   # the bus dropped it (its own limits): fine for a flood
        readable, _, _ = select.select(connections, [], [], 0.01)
        for sock in readable:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                connections.remove(sock)
                continue
            buffer = buffers[sock]
            buffer += chunk
            # Whole messages: 16 fixed bytes, the header fields (padded to 8), the body.
            while len(buffer) >= 16:
                body_length, _, fields_length = struct.unpack_from("<III", buffer, 4)
                total = 16 + fields_length + (-fields_length % 8) + body_length
                if len(buffer) < total:
                    break
                message = bytes(buffer[:total])
                del buffer[:total]
                if message[1] in (2, 3):
                    answered[sock] += 1
                    for name in counts:
                        if b"org.freedesktop.DBus.Error." + name.encode() in message:
                            counts[name] += 1
    print(f"sent {sent} answered {sum(answered.values())} limits-exceeded {counts['LimitsExceeded']} "
          f"access-denied {counts['AccessDenied']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
