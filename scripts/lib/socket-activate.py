#!/usr/bin/env python3
"""Bind a UDP port as root and pass it to a program as systemd's socket
activation does (LISTEN_FDS=1, fd 3, a dual-stack [::] socket like
ListenDatagram=PORT), after dropping to an unprivileged user with no
capabilities. Used by the test bed to exercise kusu-hbd's socket-activated path.

usage: socket-activate.py PORT USER -- COMMAND [ARGS...]
"""
import os
import pwd
import socket
import sys

port, user = int(sys.argv[1]), sys.argv[2]
command = sys.argv[sys.argv.index("--") + 1:]
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
sock.bind(("::", port))
if sock.fileno() != 3:
    os.dup2(sock.fileno(), 3)
os.set_inheritable(3, True)
entry = pwd.getpwnam(user)
os.setgroups([])
os.setgid(entry.pw_gid)
os.setuid(entry.pw_uid)  # clears the permitted and effective capability sets
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execvp(command[0], command)
