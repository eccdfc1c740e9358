"""The netns nginx baseline's temporary firewall allowance: a chain of its own, jumped to, removed after."""

from __future__ import annotations

import os
import stat

from shoplab_bench import modenginx

FAKE_IPTABLES = """#!/bin/sh
# Records every call; `-C OUTPUT` answers from a flag file that -I sets and -D clears.
echo "$*" >> "$(dirname "$0")/calls"
case "$*" in
  "-w -C OUTPUT -j BENCH-OUTPUT") [ -e "$(dirname "$0")/jumped" ] ;;
  "-w -I OUTPUT 1 -j BENCH-OUTPUT") touch "$(dirname "$0")/jumped" ;;
  "-w -D OUTPUT -j BENCH-OUTPUT") rm -f "$(dirname "$0")/jumped" ;;
  *) exit 0 ;;
esac
"""


def spec(tmp_path) -> dict:
    fake = tmp_path / "iptables"
    fake.write_text(FAKE_IPTABLES)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    prefix = ["env", f"PATH={tmp_path}:{os.environ['PATH']}"]
    rule = ["-d", "172.20.0.10/32", "-o", "br-frontend", "-p", "tcp", "--dport", 3090, "-j", "ACCEPT"]
    return {"firewall": {"prefix": prefix, "chain": "BENCH-OUTPUT", "rules": [rule]}}


def calls(tmp_path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def test_rules_go_into_our_chain_jumped_to_first(tmp_path):
    modenginx.add_rules(spec(tmp_path))
    assert calls(tmp_path) == [
        "-w -N BENCH-OUTPUT",
        "-w -F BENCH-OUTPUT",
        "-w -A BENCH-OUTPUT -d 172.20.0.10/32 -o br-frontend -p tcp --dport 3090 -j ACCEPT",
        "-w -C OUTPUT -j BENCH-OUTPUT",
        "-w -I OUTPUT 1 -j BENCH-OUTPUT",
    ]


def test_adding_twice_jumps_once(tmp_path):
    modenginx.add_rules(spec(tmp_path))
    modenginx.add_rules(spec(tmp_path))
    assert calls(tmp_path).count("-w -I OUTPUT 1 -j BENCH-OUTPUT") == 1


def test_removal_leaves_nothing(tmp_path):
    modenginx.add_rules(spec(tmp_path))
    (tmp_path / "calls").unlink()
    modenginx.remove_rules(spec(tmp_path))
    assert calls(tmp_path) == [
        "-w -C OUTPUT -j BENCH-OUTPUT",
        "-w -D OUTPUT -j BENCH-OUTPUT",
        "-w -C OUTPUT -j BENCH-OUTPUT",
        "-w -F BENCH-OUTPUT",
        "-w -X BENCH-OUTPUT",
    ]
    assert not (tmp_path / "jumped").exists()


def test_no_firewall_no_calls(tmp_path):
    modenginx.add_rules({})
    modenginx.remove_rules({})
    assert not (tmp_path / "calls").exists()
