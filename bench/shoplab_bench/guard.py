"""The route guard: load goes only to loopback or to the lab's own bridges and container networks.

`parse_route` reads one `ip route get ADDR` answer; `decide` says whether load may go there. Both are
pure, so the decision is unit-tested with real outputs (tests/bench/fixtures). The runner asks the host
(or namespace) that will send the load, right before each case.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class RouteRefused(RuntimeError):
    """Load must not go to this address (its route does not stay in the lab)."""


@dataclass(frozen=True)
class Route:
    destination: str
    device: str | None
    via: str | None
    source: str | None
    kind: str  # "unicast", "local", "unreachable", …


@dataclass(frozen=True)
class Lab:
    """What counts as the lab for the host that sends the load."""

    devices: frozenset[str]  # lab bridges, lab veths, Docker bridges of shoplab networks (br-<id>)
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # the lab's own subnets
    gateways: frozenset[str] = field(default_factory=frozenset)  # next hops allowed (lab bridge addresses)

    @classmethod
    def of(cls, devices: Iterable[str], subnets: Iterable[str], gateways: Iterable[str] = ()) -> Lab:
        return cls(
            frozenset(devices),
            tuple(ipaddress.ip_network(s, strict=False) for s in subnets),
            frozenset(gateways),
        )


_ROUTE_TYPES = {"local", "unreachable", "blackhole", "prohibit", "broadcast", "multicast", "throw"}


def parse_route(output: str) -> Route:
    """Parse `ip route get ADDR` (iproute2), e.g. `172.20.0.10 dev br-frontend src 172.20.0.1 uid 0`."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty `ip route get` output")
    words = lines[0].split()
    kind = "unicast"
    if words[0] in _ROUTE_TYPES:
        kind = words.pop(0)
    destination, rest = words[0], words[1:]
    values: dict[str, str] = {}
    for key, value in zip(rest[::2], rest[1::2], strict=False):
        values.setdefault(key, value)
    return Route(destination, values.get("dev"), values.get("via"), values.get("src"), kind)


def decide(route: Route, lab: Lab) -> str | None:  # noqa: PLR0911 (one return per reason)
    """None when load may go to route.destination; else the reason it may not."""
    try:
        address = ipaddress.ip_address(route.destination)
    except ValueError:
        return f"{route.destination!r} is not an address"
    if any(address in net for net in LOOPBACK_NETS):
        if route.kind == "local" and route.device == "lo":
            return None
        return f"{address} is a loopback address but its route is {route.kind} via {route.device}"
    if route.kind != "unicast":
        return f"{address} is {route.kind}, not a lab address"
    if route.device not in lab.devices:
        return (
            f"{address} leaves through {route.device}"
            f"{' via ' + route.via if route.via else ''}, which is not a lab bridge, veth or shoplab "
            f"Docker network (lab devices here: {', '.join(sorted(lab.devices)) or 'none'})"
        )
    if not any(address in net for net in lab.subnets):
        return f"{address} is not in a lab subnet ({', '.join(str(n) for n in lab.subnets) or 'none'})"
    if route.via and route.via not in lab.gateways:
        return f"{address} is routed via {route.via}, which is not a lab bridge address"
    return None


def check(address: str, lab: Lab, prefix: Sequence[str] = ()) -> Route:
    """Ask the sending host (`prefix`: e.g. docker exec / ip netns exec) and raise RouteRefused if needed."""
    result = subprocess.run(
        [*prefix, "ip", "route", "get", address], capture_output=True, text=True, timeout=10, check=False
    )
    if result.returncode != 0:
        raise RouteRefused(f"ip route get {address} failed: {result.stderr.strip()}")
    route = parse_route(result.stdout)
    reason = decide(route, lab)
    if reason:
        raise RouteRefused(f"refusing to send load to {address}: {reason}")
    return route
