"""Run every case of a plan, interleaved over rounds (A B C … A B C …), and write report.json.

A plan (JSON, written by roles/bench) names the targets: where the load host is (`prefix`, e.g.
`docker exec shoplab-labhost`), the base URLs for /api/products and /api/orders, and what counts as the
lab on that host (the route guard). The loopback floor (the services and nginx on 127.0.0.1, no
namespaces) is started here and stopped at the end. Each lab's data is left as the run found it
(cleanup.py): the stock is recorded before the restock, and this run's orders are deleted and the stock
put back at the end, whatever happens in between.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from shoplab_bench import acrosshosts, cleanup, cpu, guard, parse, tools

LUA_DIR = str(Path(__file__).resolve().parent.parent / "lua")

# A catalogue write: the operator's token comes in the environment (never on a command line or in a log).
_RESTOCK = """
import json, os, sys, urllib.request
base, count, stock = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
token = os.environ["SHOPLAB_OPERATOR_TOKEN"]
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
for i in range(1, count + 1):
    req = urllib.request.Request(f"{base}/api/products/{i}", data=json.dumps({"stock": stock}).encode(),
                                 method="PATCH", headers=headers)
    urllib.request.urlopen(req, timeout=10).read()
print("restocked", count)
"""


def floor_targets(floor, lab_prefix: list[str]) -> list[dict]:
    loop = {"devices": [], "subnets": [], "gateways": []}
    base = {"mode": "floor", "prefix": lab_prefix, "lab": loop, "lua_dir": LUA_DIR, "scope": "floor"}
    targets = [
        {**base, "name": "floor-gateway", "path": "gateway", "products_url": floor.gateway,
         "orders_url": floor.gateway, "tools": ["wrk", "hey", "ab"]},
        {**base, "name": "floor-direct", "path": "direct", "products_url": floor.product,
         "orders_url": floor.order, "tools": ["wrk", "hey"]},
    ]  # fmt: skip
    if floor.nginx_url:
        targets.append({**base, "name": "floor-nginx", "path": "nginx", "products_url": floor.nginx_url,
                        "orders_url": floor.nginx_url, "tools": ["wrk", "hey"]})  # fmt: skip
    return targets


def variant_targets(
    name: str, floor, endpoints: tuple = ("products", "product"), paths: tuple = ("gateway", "direct")
) -> list[dict]:
    """One server-stack alternative (plan `floor.variants`): its own floor's gateway and first product
    instance, GETs only, measured beside `floor-gateway` in the same rounds."""
    loop = {"devices": [], "subnets": [], "gateways": []}
    base = {"mode": "floor", "prefix": [], "lab": loop, "lua_dir": LUA_DIR, "scope": "floor",
            "variant": name, "endpoints": list(endpoints), "tools": ["wrk"]}  # fmt: skip
    targets = [
        {**base, "name": f"floor-gateway-{name}", "path": "alt-gateway", "products_url": floor.gateway,
         "orders_url": floor.gateway},
        {**base, "name": f"floor-direct-{name}", "path": "alt-direct", "products_url": floor.product,
         "orders_url": floor.order},
    ]  # fmt: skip
    return [t for t in targets if t["path"].removeprefix("alt-") in paths]


def build_cases(
    targets: list[dict],
    endpoints: list[str],
    ab_keepalive: list[bool],
    hey_endpoints: tuple = ("products", "product"),
) -> list[dict]:
    """One round's cases, grouped by endpoint so that every mode's same case runs side by side."""
    cases = []
    for endpoint in endpoints:
        for target in targets:
            if endpoint not in target.get("endpoints", endpoints):
                continue
            for tool in target["tools"]:
                if tool == "wrk":
                    cases.append({"target": target["name"], "endpoint": endpoint, "tool": "wrk"})
                elif tool == "hey" and endpoint in hey_endpoints and endpoint != "orders":
                    cases.append({"target": target["name"], "endpoint": endpoint, "tool": "hey"})
                elif tool == "ab" and endpoint == "products":
                    for keep in ab_keepalive:
                        cases.append({"target": target["name"], "endpoint": endpoint, "tool": "ab -k" if keep
                                      else "ab"})  # fmt: skip
    return cases


def url_for(target: dict, endpoint: str) -> str:
    return target["orders_url"] if endpoint == "orders" else target["products_url"]


def argv_for(case: dict, target: dict, load: tools.Load, nonce: str) -> list[str]:
    url = url_for(target, case["endpoint"])
    if case["tool"] == "wrk":
        return tools.wrk_argv(load, url, case["endpoint"], target["lua_dir"], nonce)
    if case["tool"] == "hey":
        return tools.hey_argv(load, url, case["endpoint"])
    return tools.ab_argv(load, url, case["endpoint"], keep_alive=case["tool"] == "ab -k")


def guard_target(target: dict) -> None:
    lab = guard.Lab.of(**target["lab"])
    for url in {target["products_url"], target["orders_url"]}:
        guard.check(urlsplit(url).hostname, lab, target["prefix"])


def restock(target: dict, products: int, stock: int, token: str) -> None:
    """Set every product's stock through the target (a catalogue write: `token` is the operator's)."""
    argv = [*target["prefix"], "timeout", "120", "python3", "-c", _RESTOCK, target["products_url"],
            str(products), str(stock)]  # fmt: skip
    env = {**os.environ, "SHOPLAB_OPERATOR_TOKEN": token}
    subprocess.run(argv, check=True, capture_output=True, timeout=150, env=env)


def operator_token(target: dict, plan: dict, running: Running) -> str:
    """The operator token of the target's lab: the floor's own, or read with the plan's command for the
    mode (`operator_tokens`, from roles/bench: the token file on the lab host, or a container's secret)."""
    if target["mode"] == "floor" and running.floor is not None:
        return running.floor.stack.common_env["SHOPLAB_OPERATOR_TOKEN"]
    argv = plan.get("operator_tokens", {}).get(target["mode"])
    if not argv:
        raise RuntimeError(f"no command to read the {target['mode']} lab's operator token in the plan: "
                           "its catalogue cannot be restocked")  # fmt: skip
    read = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if read.returncode != 0 or not read.stdout.strip():
        raise RuntimeError(f"reading the {target['mode']} lab's operator token failed: {read.stderr.strip()}")
    return read.stdout.strip()


def warm_up(target: dict, load: tools.Load, seconds: int, endpoints: list[str]) -> None:
    short = tools.Load(**{**asdict(load), "duration_s": seconds})
    for endpoint in endpoints:
        if endpoint == "orders":
            continue  # writes: the measured rounds are enough
        argv = tools.wrk_argv(short, url_for(target, endpoint), endpoint, target["lua_dir"], "warmup")
        tools.run(target["prefix"], argv, seconds + 15)


def run_case(case: dict, target: dict, load: tools.Load, classifier: cpu.Classifier, run_id: str) -> dict:
    guard_target(target)  # every case, right before its load: a bridge may have gone since the last one
    # Idempotency-Keys `shoplab-bench-<run id>-<case id>-<thread>-<counter>`: cleanup selects them by prefix.
    nonce = cleanup.key_nonce(run_id, uuid.uuid4().hex[:12])
    argv = argv_for(case, target, load, nonce)
    # Context switches are sampled inside the run (cpu.SwitchWindow): once the tool closes its
    # connections, the threads that served them are gone, and their counts with them.
    before, busy0 = cpu.snapshot(), cpu.machine_ticks()
    measured = [
        pid
        for pid, p in before.items()
        if classifier.scope(p, before) == target["mode"] and classifier.group(p) != "other"
    ]
    window = cpu.SwitchWindow.for_run(classifier, tools.duration_of(argv, load), measured)
    if window:
        window.start()
    ran = tools.run(target["prefix"], argv, tools.limit_for(argv, load))
    after, busy1 = cpu.snapshot(), cpu.machine_ticks()
    record = {
        **case,
        "mode": target["mode"],
        "path": target["path"],
        "command": [*target["prefix"], *argv],
        "returncode": ran.returncode,
        "wall_s": round(ran.wall_s, 3),
        "load_tool_cpu_s": ran.tool_cpu_s,
        "machine_busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
        "cpu_s": cpu.usage(before, after, classifier),
        "switches": window.result() if window else None,
        "output": ran.output,
    }
    try:
        record["result"] = parse.PARSERS[case["tool"].split()[0]](ran.output)
        record["ok"] = ran.returncode == 0
    except parse.ParseError as error:
        record["result"], record["ok"], record["error"] = None, False, str(error)
    return record


def environment(plan: dict) -> dict:
    def sh(*argv: str) -> str:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=20, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    hosts = {}
    for target in plan["targets"]:
        key = " ".join(target["prefix"]) or "localhost"
        if key not in hosts:
            hosts[key] = tools.versions(target["prefix"])
    return {
        "kernel": platform.release(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "commit": sh("git", "rev-parse", "HEAD"),
        "commit_dirty": bool(sh("git", "status", "--porcelain", "--", "bench", "services", "roles")),
        "docker": sh("docker", "version", "--format", "{{.Server.Version}}"),
        "tool_versions": hosts,
        "note": "Every load tool, service, proxy and datastore shares this machine's kernel and cores.",
    }


class Running:
    """What a run started (the floor, nginx baselines) and must stop, and the lab data it must put
    back (cleanup.py), whatever happens."""

    def __init__(self, run_id: str | None = None, out_dir: Path | None = None) -> None:
        self.run_id = run_id or cleanup.new_run_id()
        self.out_dir = out_dir  # where the recorded stock is saved (RECORDED), for a later `cleanup`
        self.floor = None
        self.variant_floors: list = []  # plan `floor.variants`: one floor per server-stack alternative
        self.nginxes: list = []
        # mode -> (database, the stock recorded before the restock)
        self.recorded: dict[str, tuple[cleanup.Database, list[dict]]] = {}

    def stop(self) -> None:
        for handle in self.nginxes:
            handle.stop()
        for floor in self.variant_floors:
            floor.stop()
        if self.floor:
            self.floor.stop()

    def put_back(self, log) -> dict:
        """Delete this run's orders and restore the recorded stock in every lab (one transaction each)."""
        results = {}
        for mode, (db, stock) in self.recorded.items():
            try:
                result = cleanup.clean(db, self.run_id, stock)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as error:
                result = {"error": str(error), "key_prefix": cleanup.run_prefix(self.run_id)}
            result["products_recorded"] = len(stock)
            results[mode] = result
            log(f"cleanup {cleanup.summary(mode, result)}")
        return results


def start_targets(plan: dict, running: Running, classifier: cpu.Classifier, report: dict, log) -> list[dict]:
    targets = []
    if plan.get("floor", {}).get("enabled", True):
        from shoplab_bench.floor import start_floor

        log("starting the loopback floor (redis, postgres, registry, 2 product, 2 order, gateway, nginx)")
        running.floor = start_floor(
            nginx=plan["floor"].get("nginx", True),
            workers=plan["floor"].get("workers", 2),
            scheduling=plan["floor"].get("cpu_scheduling", {}),
        )
        targets += floor_targets(running.floor, [])
        if plan["floor"].get("only_gateway"):
            targets = [t for t in targets if t["path"] == "gateway"]
        targets += start_variants(plan, running, log)
    targets += plan.get("targets", [])
    for spec in plan.get("mode_nginx", []):
        from shoplab_bench import modenginx

        try:
            guard_target(spec["target"])
            log(f"starting nginx for {spec['target']['name']} on {spec['listen']}")
            running.nginxes.append(modenginx.start(spec))
            classifier.roots[running.nginxes[-1].popen.pid] = spec["target"]["mode"]
            targets.append(spec["target"])
        except (RuntimeError, guard.RouteRefused, subprocess.SubprocessError) as error:
            log(f"no nginx baseline for {spec['target']['name']}: {error}")
            report["skipped"].append({"target": spec["target"]["name"], "why": str(error)})
    return targets


def start_variants(plan: dict, running: Running, log) -> list[dict]:
    """The server-stack alternatives (services/src/shoplab/server/README.md): each a floor of its own,
    the same services with another worker class, upstream pool or Redis client for the gateway and the
    product instances (`env`: service -> environment), stopped with the run."""
    from shoplab_bench.floor import start_floor

    targets = []
    for variant in plan["floor"].get("variants", []):
        log(f"starting the {variant['name']} floor ({variant.get('about', '')})")
        floor = start_floor(
            nginx=False,
            workers=plan["floor"].get("workers", 2),
            scheduling=plan["floor"].get("cpu_scheduling", {}),
            per_service_env=variant.get("env", {}),
        )
        running.variant_floors.append(floor)
        targets += variant_targets(
            variant["name"], floor, paths=tuple(variant.get("paths", ("gateway", "direct")))
        )
        if plan["floor"].get("only_gateway"):
            targets = [t for t in targets if t["path"] == "alt-gateway"]
    return targets


def record_stock(targets: list[dict], plan: dict, load: tools.Load, running: Running, log) -> None:
    """Before any write: each lab's stock, read from its database (what the cleanup puts back).

    A lab whose orders the run could not delete again is refused before any load (the floor's
    PostgreSQL is the run's own and is thrown away with it)."""
    if not plan.get("cleanup", True):
        log("cleanup off (bench_cleanup: false): this run's orders and the restocked stock stay in the labs")
        return
    databases = plan.get("databases", {})
    for mode in dict.fromkeys(t["mode"] for t in targets if t["mode"] != "floor"):
        if mode not in databases:
            raise RuntimeError(f"no database command for the {mode} lab in the plan: its orders could not be "
                               "deleted again, so none are placed")  # fmt: skip
        db = cleanup.Database.of(mode, databases[mode])
        running.recorded[mode] = (db, cleanup.snapshot(db, load.products))
        if running.out_dir:  # before any write: a run killed hard can still be cleaned up from it
            cleanup.save(running.out_dir / cleanup.RECORDED, running.run_id, running.recorded)
        log(f"recorded the stock of {len(running.recorded[mode][1])} products in the {mode} lab; "
            f"this run's Idempotency-Keys start with {cleanup.run_prefix(running.run_id)}")  # fmt: skip


def prepare(
    targets: list[dict],
    plan: dict,
    load: tools.Load,
    endpoints: list[str],
    log,
    *,
    running: Running | None = None,
) -> None:
    for target in targets:  # refuse before any load at all
        guard_target(target)
    if "orders" in endpoints and running is not None:
        record_stock(targets, plan, load, running, log)
    for target in targets:
        if target["path"] == "gateway" and "orders" in endpoints:
            log(f"restocking through {target['name']}")
            token = operator_token(target, plan, running or Running())
            restock(target, load.products, plan.get("restock", 1_000_000), token)
    for target in targets:
        log(f"warming up {target['name']}")
        warm_up(target, load, plan.get("warmup_s", 3), endpoints)


def run_plan(plan: dict, out_dir: Path, log=print) -> dict:
    load = tools.Load(**plan.get("load", {}))
    endpoints = plan.get("endpoints", list(tools.ENDPOINTS))
    running = Running(out_dir=out_dir)
    deadline = time.monotonic() + plan.get("max_seconds", 1200)
    report: dict = {"started": dt.datetime.now(dt.UTC).isoformat(), "run_id": running.run_id, "plan": plan,
                    "cases": [], "skipped": [], "cleanup": {}}  # fmt: skip
    classifier = cpu.Classifier(
        runner_pid=os.getpid(),
        netns_cgroup=plan.get("classifier", {}).get("netns_cgroup"),
        docker_ids=frozenset(plan.get("classifier", {}).get("docker_ids", [])),
        # A lab VM's QEMU process counts for the mode that runs in it (JSON keys are strings).
        roots={int(pid): mode for pid, mode in plan.get("classifier", {}).get("vm_pids", {}).items()},
    )
    try:
        targets = start_targets(plan, running, classifier, report, log)
        plan["targets"] = targets
        report["environment"] = environment(plan)
        by_name = {t["name"]: t for t in targets}
        prepare(targets, plan, load, endpoints, log, running=running)
        cases = build_cases(
            targets,
            endpoints,
            plan.get("ab_keepalive", [False, True]),
            tuple(plan.get("hey_endpoints", ["products"])),
        )
        for round_no in range(1, plan.get("rounds", 3) + 1):
            for case in cases:
                if time.monotonic() > deadline:
                    report["skipped"].append({**case, "round": round_no, "why": "time budget spent"})
                    continue
                record = run_case(case, by_name[case["target"]], load, classifier, running.run_id)
                record["round"] = round_no
                report["cases"].append(record)
                res = record.get("result") or {}
                log(f"r{round_no} {case['target']:<22} {case['endpoint']:<9} {case['tool']:<6} "
                    f"{res.get('rps', 0):9.1f} req/s  p99 {res.get('latency_ms', {}).get('p99', 0):7.1f} ms  "
                    f"non-2xx {res.get('non_2xx', '?')}  errors {res.get('errors', '?')}")  # fmt: skip
        if plan.get("profile", {}).get("enabled") and running.floor:
            from shoplab_bench.profile import profile_gateway

            log("profiling the loopback gateway with py-spy")
            report["profile"] = profile_gateway(running.floor, load, plan["profile"].get("seconds", 6))
    finally:
        running.stop()
        if sys.exc_info()[0] is not None and running.recorded:
            time.sleep(2)  # interrupted: let the requests in flight commit before their orders are deleted
        report["cleanup"] = running.put_back(log)
        report["finished"] = dt.datetime.now(dt.UTC).isoformat()
        if int(plan.get("lab_hosts", 1)) > 1:
            report["across_hosts"] = acrosshosts.reference(plan)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report
