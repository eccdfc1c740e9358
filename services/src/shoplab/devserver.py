"""`make run-local`: the whole system on loopback with a throwaway Redis and PostgreSQL; Ctrl-C stops it."""

from __future__ import annotations

import argparse
import os
import signal
import time

from shoplab import DEFAULT_PORTS
from shoplab.devtools.servers import port_open
from shoplab.devtools.stack import start_stack


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shoplab.devserver", description=__doc__)
    parser.add_argument("--products", type=int, default=2, help="product instances (default 2)")
    parser.add_argument("--orders", type=int, default=2, help="order instances (default 2)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--gateway-port", type=int, default=DEFAULT_PORTS["gateway"])
    args = parser.parse_args()
    if port_open(args.gateway_port):
        in_use = (
            f"Port {args.gateway_port} is already in use (the lab itself?); "
            f"try --gateway-port {args.gateway_port + 1}\n"
        )
        parser.exit(1, in_use)

    stack = start_stack(
        products=args.products, orders=args.orders, workers=args.workers, gateway_port=args.gateway_port
    )
    print(f"Shoplab is up. Gateway: {stack.gateway_url}/api/products", flush=True)
    print(f"Registry: {stack.registry_url}/services   Logs: {stack.servers.root}", flush=True)
    # This run's own throwaway token (start_stack made it up): catalogue writes and the order list need it.
    operator = stack.operator_headers["Authorization"]
    print(f"Catalogue writes, order list: curl -H 'Authorization: {operator}' …", flush=True)
    print("Ctrl-C stops everything.", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            for process in stack.servers.processes:
                if not process.alive():
                    print(f"{process.name} exited; its log ends with:\n{process.log_tail()}", flush=True)
                    stopping.append(True)
                    break
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping…", flush=True)
        stack.servers.stop()


if __name__ == "__main__":
    main()
