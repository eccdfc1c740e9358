"""Summarise pcap files per flow: tier/instance -> tier/instance, port, packets, bytes.

Usage: pcap_summary.py NAMES_JSON FILE.pcap...   (NAMES_JSON maps an IPv4 address to
{"name": ..., "tier": ...}; unknown addresses are printed as they are.)
A small reader for classic pcap files (Ethernet or Linux cooked captures), so that no Wireshark or
Python package is needed. A connection is counted once per capture file, in the direction client ->
server (the server is the side on a known service port, else the lower port); packets and bytes are
both directions together. Prints a table and, with --json, the rows as JSON on the last line.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from collections import defaultdict
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113


def packets(path: Path):  # noqa: PLR0912 (one branch per link type and header)
    """Yield (src, dst, proto, sport, dport, length) of every IPv4 packet in a classic pcap file."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    offset = 24
    while offset + 16 <= len(data):
        _sec, _frac, caplen, origlen = struct.unpack(endian + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        if linktype == LINKTYPE_ETHERNET:
            if len(frame) < 14:
                continue
            ethertype, ip = struct.unpack("!H", frame[12:14])[0], 14
            if ethertype == 0x8100 and len(frame) >= 18:  # VLAN tag
                ethertype, ip = struct.unpack("!H", frame[16:18])[0], 18
        elif linktype == LINKTYPE_LINUX_SLL:
            if len(frame) < 16:
                continue
            ethertype, ip = struct.unpack("!H", frame[14:16])[0], 16
        else:
            continue
        if ethertype != 0x0800 or len(frame) < ip + 20:
            continue
        ihl = (frame[ip] & 0x0F) * 4
        proto = frame[ip + 9]
        src = socket.inet_ntoa(frame[ip + 12 : ip + 16])
        dst = socket.inet_ntoa(frame[ip + 16 : ip + 20])
        total = struct.unpack("!H", frame[ip + 2 : ip + 4])[0]
        sport = dport = 0
        if proto in (6, 17) and len(frame) >= ip + ihl + 4:
            sport, dport = struct.unpack("!HH", frame[ip + ihl : ip + ihl + 4])
        yield src, dst, proto, sport, dport, total or origlen


def summarise(names: dict, files: list[Path], service_ports: set[int]) -> list[dict]:
    flows: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for path in files:
        for src, dst, proto, sport, dport, length in packets(path):
            if proto != 6:
                continue
            if sport in service_ports and dport not in service_ports:
                client, server, port = dst, src, sport
            elif (dport in service_ports) or dport < sport:
                client, server, port = src, dst, dport
            else:
                client, server, port = dst, src, sport
            key = (path.stem, client, server, port)
            flows[key][0] += 1
            flows[key][1] += length
    rows = []
    for (capture, client, server, port), (count, size) in sorted(
        flows.items(), key=lambda kv: (kv[0][0], -kv[1][1])
    ):
        src = names.get(client, {"name": client, "tier": "?"})
        dst = names.get(server, {"name": server, "tier": "?"})
        rows.append(
            {
                "capture": capture,
                "from_tier": src["tier"],
                "from": src["name"],
                "to_tier": dst["tier"],
                "to": dst["name"],
                "port": port,
                "packets": count,
                "bytes": size,
            }
        )
    return rows


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--json"]
    names = json.loads(Path(args[0]).read_text())
    ports = {int(p) for p in names.pop("_ports", [])}
    rows = summarise(names, [Path(a) for a in args[1:]], ports)
    header = (
        f"{'capture':<18} {'from (tier/instance)':<32} {'to (tier/instance)':<32} "
        f"{'port':>5} {'packets':>8} {'bytes':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        src = f"{r['from_tier']}/{r['from']}"
        dst = f"{r['to_tier']}/{r['to']}"
        print(f"{r['capture']:<18} {src:<32} {dst:<32} {r['port']:>5} {r['packets']:>8} {r['bytes']:>10}")
    if not rows:
        print("(no TCP packet captured)")
    if "--json" in sys.argv:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
