#!/usr/bin/env python3
"""Compare a live D-Bus introspection with the reference XML in dbus/.

usage: compare-introspection.py REFERENCE.xml LIVE.xml INTERFACE
Compares the named interface: methods and their arguments (name, type,
direction), signals and their arguments, properties (type, access) and
annotations. Prints each difference and exits 1 if there is any.
"""
import sys
import xml.etree.ElementTree as ET


def describe(path, name):
    root = ET.parse(path).getroot()
    iface = next((i for i in root.iter("interface") if i.get("name") == name), None)
    if iface is None:
        return None
    items = {}
    for kind in ("method", "signal", "property"):
        for el in iface.findall(kind):
            args = tuple(
                (a.get("name"), a.get("type"), a.get("direction", "in" if kind == "method" else "out"))
                for a in el.findall("arg")
            )
            notes = tuple(sorted((n.get("name"), n.get("value")) for n in el.findall("annotation")))
            items[(kind, el.get("name"))] = (args, el.get("type"), el.get("access"), notes)
    return items


reference, live, name = sys.argv[1], sys.argv[2], sys.argv[3]
want, got = describe(reference, name), describe(live, name)
if got is None:
    print(f"{live}: interface {name} is not exported")
    sys.exit(1)
problems = []
for key in sorted(set(want) | set(got)):
    if key not in got:
        problems.append(f"missing from the live object: {key[0]} {key[1]}")
    elif key not in want:
        problems.append(f"not in {reference}: {key[0]} {key[1]}")
    elif want[key] != got[key]:
        problems.append(f"{key[0]} {key[1]} differs: reference {want[key]} live {got[key]}")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
