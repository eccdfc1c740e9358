"""`shoplab-probe [URL]`: exit 0 when URL answers 200 (for container healthchecks without curl).

Default URL: this instance's /ready, from PORT (or the service's default port given as argument).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

from shoplab.core.config import DEFAULT_PORTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoplab-probe", description=__doc__)
    parser.add_argument("target", nargs="?", default="", help="a URL, or a service name (uses its port)")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    url = args.target
    if not url.startswith("http"):
        port = os.environ.get("PORT") or DEFAULT_PORTS.get(args.target, 8000)
        url = f"http://127.0.0.1:{port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
