"""The runner's building blocks: bounded tool runs, the interleaved schedule, CPU attribution."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from shoplab_bench import cpu, runner, tools


def test_run_is_bounded_by_timeout():
    started = time.monotonic()
    ran = tools.run([], ["sleep", "30"], limit_s=1)
    assert ran.returncode == 124  # timeout(1)'s exit status
    assert time.monotonic() - started < 10


def test_run_reports_the_tools_cpu_and_output():
    ran = tools.run([], ["python3", "-c", "sum(range(3_000_000)); print('done')"], limit_s=30)
    assert ran.returncode == 0
    assert ran.output.strip() == "done"
    assert ran.tool_cpu_s is not None
    assert ran.tool_cpu_s > 0


def test_every_command_is_bounded():
    load = tools.Load(duration_s=8, hey_duration_s=5)
    wrk = tools.wrk_argv(load, "http://127.0.0.1:1", "orders", "/lua", "n1")
    assert "-d8s" in wrk
    assert wrk[-3:] == ["--", "n1", "300"]
    assert "-z" in tools.hey_argv(load, "http://127.0.0.1:1", "products")
    ab = tools.ab_argv(load, "http://127.0.0.1:1", "products", keep_alive=True)
    assert "-n" in ab
    assert "-s" in ab
    assert "-k" in ab
    assert tools.limit_for(wrk, load) < 60


def test_cases_are_interleaved_by_endpoint_across_targets():
    targets = [
        {"name": "netns-gateway", "tools": ["wrk", "ab"]},
        {"name": "docker-gateway", "tools": ["wrk"]},
    ]
    cases = runner.build_cases(targets, ["products", "orders"], [False, True])
    assert [(c["target"], c["endpoint"], c["tool"]) for c in cases] == [
        ("netns-gateway", "products", "wrk"),
        ("netns-gateway", "products", "ab"),
        ("netns-gateway", "products", "ab -k"),
        ("docker-gateway", "products", "wrk"),
        ("netns-gateway", "orders", "wrk"),
        ("docker-gateway", "orders", "wrk"),
    ]


def test_cpu_groups_and_scopes():
    me = os.getpid()
    procs = {
        10: cpu.Proc(10, me, "python", 100, "/venv/bin/python -m shoplab.serve gateway", "8:pids:/user"),
        11: cpu.Proc(11, 10, "python", 300, "/venv/bin/python -m shoplab.serve gateway", "8:pids:/user"),
        20: cpu.Proc(20, 1, "redis-server", 50, "/usr/bin/redis-server *:6379", "8:pids:/docker/abc/x"),
        30: cpu.Proc(30, 1, "python3", 70, "/usr/bin/python3 /usr/local/bin/shoplab-serve product",
                     "8:pids:/docker/feed"),
        40: cpu.Proc(40, 1, "docker-proxy", 90, "/usr/bin/docker-proxy -proto tcp", "8:pids:/"),
        50: cpu.Proc(50, 1, "bash", 500, "bash", "8:pids:/"),
    }  # fmt: skip
    before = {pid: cpu.Proc(p.pid, p.ppid, p.comm, 0, p.cmdline, p.cgroup) for pid, p in procs.items()}
    classifier = cpu.Classifier(runner_pid=me, netns_cgroup="/docker/abc", docker_ids=frozenset({"feed"}))
    used = cpu.usage(before, procs, classifier)
    ticks = cpu.TICKS
    assert used["floor"] == {"gateway": round(400 / ticks, 3)}
    assert used["netns"] == {"redis": round(50 / ticks, 3)}
    assert used["docker"] == {"product": round(70 / ticks, 3)}
    assert used["engine"] == {"docker-proxy": round(90 / ticks, 3)}
    assert used["other"] == {"other": round(500 / ticks, 3)}


def test_a_lab_vms_qemu_process_counts_for_the_mode_that_runs_in_it():
    me = os.getpid()
    qemu = "/usr/bin/qemu-system-x86_64 -name guest=shoplab-vm-1,debug-threads=on -accel tcg"
    procs = {
        60: cpu.Proc(60, 1, "qemu-system-x86", 900, qemu, "0::/machine.slice"),
        61: cpu.Proc(61, 1, "qemu-system-x86", 40, qemu.replace("vm-1", "vm-2"), "0::/machine.slice"),
    }  # fmt: skip
    before = {pid: cpu.Proc(p.pid, p.ppid, p.comm, 0, p.cmdline, p.cgroup) for pid, p in procs.items()}
    used = cpu.usage(before, procs, cpu.Classifier(runner_pid=me, roots={60: "netns"}))
    assert used["netns"] == {"vm": round(900 / cpu.TICKS, 3)}
    assert used["other"] == {"vm": round(40 / cpu.TICKS, 3)}  # another VM: not the measured lab


def test_context_switches_are_counted_thread_by_thread():
    me = os.getpid()
    gateway = "/venv/bin/python -m shoplab.serve gateway"
    before = {
        10: cpu.Proc(10, me, "python", 0, gateway, "8:pids:/user", ((10, 5), (11, 100), (12, 40))),
        30: cpu.Proc(30, 1, "python3", 0, "shoplab-serve product", "8:pids:/docker/feed", ((30, 7),)),
    }  # fmt: skip
    after = {
        # thread 11 went on (+20), thread 12 ended (its count is gone, not negative), thread 13 is new (+9)
        10: cpu.Proc(10, me, "python", 0, gateway, "8:pids:/user", ((10, 6), (11, 120), (13, 9))),
        30: cpu.Proc(30, 1, "python3", 0, "shoplab-serve product", "8:pids:/docker/feed", ((30, 7),)),
        # a process born during the case counts fully
        31: cpu.Proc(31, 30, "python3", 0, "shoplab-serve product", "8:pids:/docker/feed", ((31, 4),)),
    }  # fmt: skip
    classifier = cpu.Classifier(runner_pid=me, docker_ids=frozenset({"feed"}))
    assert cpu.switches(before, after, classifier) == {"docker": {"product": 4}, "floor": {"gateway": 30}}


def test_context_switches_of_this_process_are_read():
    threads = dict(cpu.read_switches(Path(f"/proc/{os.getpid()}")))
    assert os.getpid() in threads  # the main thread's id is the pid
    assert all(count >= 0 for count in threads.values())
    assert cpu.snapshot(threads=True)[os.getpid()].switches
    assert cpu.snapshot()[os.getpid()].switches == ()  # the CPU snapshots do not read every thread


def test_switch_window_samples_inside_a_timed_run():
    classifier = cpu.Classifier(runner_pid=os.getpid())
    assert cpu.SwitchWindow.for_run(classifier, None) is None  # ab: a number of requests, not a duration
    # A child that sleeps 5 ms at a time for 3 s switches context ~100 times a second.
    child = subprocess.Popen([sys.executable, "-c", "import time\nfor _ in range(600): time.sleep(0.005)"])
    try:
        result = cpu.SwitchWindow.for_run(classifier, 2).start().result()
    finally:
        child.kill()
        child.wait()
    assert 0.9 <= result["seconds"] <= 1.5  # 0.5 s .. 1.5 s into the run
    assert result["counts"]["floor"]["other"] >= 50


def test_switch_window_reads_only_the_measured_processes():
    classifier = cpu.Classifier(runner_pid=os.getpid())
    # The measured child switches ~100-200 times a second, the unmeasured one thousands of times.
    measured, unmeasured = (
        subprocess.Popen([sys.executable, "-c", f"import time\nfor _ in range({n}): time.sleep({pause})"])
        for n, pause in ((600, 0.005), (30_000, 0.0001))
    )
    try:
        window = cpu.SwitchWindow.for_run(classifier, 2, pids=[measured.pid])
        result = window.start().result()
        only = cpu.snapshot(threads=True, pids=[measured.pid, unmeasured.pid])
    finally:
        for child in (measured, unmeasured):
            child.kill()
            child.wait()
    assert 50 <= result["counts"]["floor"]["other"] <= 400 * result["seconds"]
    assert set(only) == {measured.pid, unmeasured.pid}
    assert all(p.switches for p in only.values())


def test_cpu_snapshot_reads_this_process():
    snap = cpu.snapshot()
    assert os.getpid() in snap
    busy, total = cpu.machine_ticks()
    assert 0 < busy <= total


def test_a_variant_floor_is_measured_on_its_own_paths_with_wrk_on_gets():
    class Floor:
        gateway, product, order = "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"

    targets = runner.variant_targets("uvicorn", Floor(), paths=("gateway",))
    assert [t["name"] for t in targets] == ["floor-gateway-uvicorn"]
    assert targets[0]["path"] == "alt-gateway" and targets[0]["tools"] == ["wrk"]
    cases = runner.build_cases(targets, ["products", "orders"], [False])
    assert cases == [{"target": "floor-gateway-uvicorn", "endpoint": "products", "tool": "wrk"}]
