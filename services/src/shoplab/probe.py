"""`shoplab-probe [TARGET] [--timeout SECONDS]`: exit 0 when TARGET answers 200 (container healthchecks).

TARGET is a URL (`http://host[:port]/path`), a path (`/health`: this instance, on $PORT), a service name
(`product`: its default port's /ready), or nothing (this instance's /ready, on $PORT).

Docker runs every container's healthcheck every few seconds, so the probe does no more than that: one
socket, one HTTP/1.0 request, the status line. urllib's imports alone cost ~40 ms of CPU per check; with
eight containers checked every 5 s, those bursts showed in the latency tail of every request on a
2-core lab host (make bench), whichever mode served it.
"""

from __future__ import annotations

import os
import socket
import sys

from shoplab import DEFAULT_PORTS

USAGE = "usage: shoplab-probe [URL | /path | service] [--timeout SECONDS]"


class UsageError(ValueError):
    pass


def parse_args(argv: list[str]) -> tuple[str, float]:
    target, timeout = "", 3.0
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--timeout":
            if not args:
                raise UsageError("--timeout needs a number of seconds")
            try:
                timeout = float(args.pop(0))
            except ValueError:
                raise UsageError("--timeout needs a number of seconds") from None
            if not timeout > 0:
                raise UsageError("--timeout must be more than 0 seconds")
        elif arg.startswith("-") or target:
            raise UsageError(f"unexpected argument {arg!r}")
        else:
            target = arg
    return target, timeout


def resolve(target: str) -> tuple[str, int, str]:
    """(host, port, path) that TARGET names."""
    if not target.startswith(("http://", "/")):
        if target and target not in DEFAULT_PORTS:
            raise UsageError(f"{target!r} is not a URL, a path or a service ({', '.join(DEFAULT_PORTS)})")
        return "127.0.0.1", DEFAULT_PORTS[target] if target else _own_port(), "/ready"
    if target.startswith("/"):
        return "127.0.0.1", _own_port(), target
    authority, slash, path = target[len("http://") :].partition("/")
    host, port = authority, "80"
    if authority.startswith("["):  # [IPv6]:port
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"{target!r} is not a URL like http://host[:port]/path")
    return host, int(port), (slash + path) or "/"


def _own_port() -> int:
    port = os.environ.get("PORT") or "8000"
    if not port.isdigit():
        raise UsageError(f"PORT={port!r} is not a port number")
    return int(port)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 address in a URL or a Host header


def status_of(host: str, port: int, path: str, timeout: float) -> int:
    """The HTTP status code the server answers to GET path."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        request = f"GET {path} HTTP/1.0\r\nHost: {_bracketed(host)}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        head = b""
        while b"\r\n" not in head and len(head) < 1024:
            chunk = sock.recv(1024)
            if not chunk:
                break
            head += chunk
    version, _, rest = head.partition(b"\r\n")[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/") or not code.isdigit():
        raise OSError(f"not an HTTP answer: {head[:40]!r}")
    return int(code)


def main(argv: list[str] | None = None) -> int:
    try:
        target, timeout = parse_args(sys.argv[1:] if argv is None else argv)
        host, port, path = resolve(target)
    except UsageError as error:
        print(f"shoplab-probe: {error}\n{USAGE}", file=sys.stderr)
        return 2
    url = f"http://{_bracketed(host)}:{port}{path}"
    try:
        code = status_of(host, port, path, timeout)
    except OSError as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"{url}: HTTP {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
