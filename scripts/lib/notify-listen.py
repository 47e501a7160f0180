#!/usr/bin/env python3
"""Stand in for systemd's notification socket: bind an AF_UNIX datagram socket
at PATH, let USER write to it, and print each sd_notify(3) message with its
arrival time (CLOCK_REALTIME seconds), one field per line. Exits after
SECONDS or when the process that printed STOPPING=1 is gone.

usage: notify-listen.py PATH USER SECONDS
"""
import os
import pwd
import socket
import sys
import time

path, user, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
entry = pwd.getpwnam(user)
os.chown(path, entry.pw_uid, entry.pw_gid)
os.chmod(path, 0o600)
print("listening", flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        data = sock.recv(4096)
    except socket.timeout:
        break
    for field in data.decode(errors="replace").split("\n"):
        if field:
            print(f"{time.time():.6f} {field}", flush=True)
