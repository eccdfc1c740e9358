"""The isolation matrix across VMs: from every namespace, on the VM that runs it, to every lab
address:port, a TCP connection opens exactly when the flow data allows it (each VM's firewall, from the
same list, sees the routed leg on the source's VM and the bridged leg on the target's). From the host:
the gateway's VM, which is the only one the published gateway and the host flows are on."""

from __future__ import annotations

from labtest import TIMEOUT_FACTOR
from mhdata import GATEWAY_VM, INSTANCES, MATRIX, VMS, host_of

TIMEOUT = 3.0 * TIMEOUT_FACTOR


def test_isolation_matrix_across_vms():
    wrong = []
    by_name = {i["name"]: i for i in INSTANCES}
    for source in sorted({c["source"] for c in MATRIX}):
        cells = [c for c in MATRIX if c["source"] == source]
        if source == "host":
            vm, namespace = GATEWAY_VM, None
        else:
            vm, namespace = VMS[host_of(by_name[source])], by_name[source]["namespace"]
        results = vm.probe(namespace, [(c["address"], c["port"]) for c in cells], TIMEOUT)
        for cell, result in zip(cells, results, strict=True):
            if result["ok"] != cell["allowed"]:
                target = f"{cell['target']} ({host_of(by_name[cell['target']])})"
                expected = "open" if cell["allowed"] else "blocked"
                got = "open" if result["ok"] else result["error"]
                wrong.append(f"{source} ({vm.name}) -> {target}: expected {expected}, got {got}")
    assert not wrong, f"{len(wrong)} wrong cells of {len(MATRIX)}:\n" + "\n".join(wrong)


def test_the_matrix_crosses_vms_both_ways():
    """Guard against a vacuous matrix: allowed and denied cells both between instances on different VMs."""
    by_name = {i["name"]: i for i in INSTANCES}
    sources = [c for c in MATRIX if c["source"] != "host"]
    across = [c for c in sources if host_of(by_name[c["source"]]) != host_of(by_name[c["target"]])]
    assert any(c["allowed"] for c in across)
    assert any(not c["allowed"] for c in across)
