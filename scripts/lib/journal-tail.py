#!/usr/bin/env python3
"""journalctl -o json on stdin → one short line per entry, with the fields that say why.

Used by scripts/lib/faultlib.sh to print what the daemons said when a scenario fails, so that
a failure in CI can be read from its log alone: "#   SS.mmm IDENTIFIER: MESSAGE FIELD=value..."
"""
import json
import sys

FIELDS = ("REASON", "ERROR", "OP_NAME", "RESOURCE_NAME", "NODE_ROLE", "PEER_STATE")

for line in sys.stdin:
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    extra = " ".join(f"{key}={entry[key]}" for key in FIELDS if isinstance(entry.get(key), str))
    microseconds = int(entry.get("__REALTIME_TIMESTAMP", "0"))
    stamp = f"{microseconds // 1000000 % 60:02d}.{microseconds % 1000000 // 1000:03d}"
    identifier = entry.get("SYSLOG_IDENTIFIER", "?")
    message = entry.get("MESSAGE", "")
    if not isinstance(message, str):
        message = "(binary)"
    print(f"#   {stamp} {identifier}: {message} {extra}"[:400])
