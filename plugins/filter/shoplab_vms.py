"""Derive the lab VMs (name, fixed address, MAC address) from group_vars/all/lab_vms.yml.

Plain functions, as in shoplab_topology: the vm_host role (as an Ansible filter) and the tests compute
the same answer from the same data.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping

MAC_PREFIX = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){4}$")
MAX_BRIDGE_NAME = 15  # IFNAMSIZ - 1


class VmNetworkError(ValueError):
    """The VM network data or the VM count is unusable; the message names the variable."""


def _check_network(network: dict) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(network["subnet"])
        host = ipaddress.IPv4Address(network["host_address"])
    except (KeyError, ValueError) as err:
        raise VmNetworkError(f"shoplab_vm_network needs an IPv4 subnet and host_address: {err}") from err
    if host not in subnet or host in (subnet.network_address, subnet.broadcast_address):
        raise VmNetworkError(f"shoplab_vm_network.host_address {host} is not a host address of {subnet}")
    bridge = str(network.get("bridge", ""))
    if not 0 < len(bridge) <= MAX_BRIDGE_NAME:
        raise VmNetworkError(f"shoplab_vm_network.bridge must have 1 to 15 characters, got '{bridge}'")
    if not MAC_PREFIX.match(str(network.get("mac_prefix", "")).lower()):
        got = network.get("mac_prefix")
        raise VmNetworkError(
            f"shoplab_vm_network.mac_prefix must be five hex octets (52:54:00:xx:yy), got '{got}'"
        )
    return subnet


def shoplab_vms(network: dict, count: int | str, prefix: str) -> list[dict]:
    """VMs 1..count: `{index, name, address, mac}`; VM n has address first_offset + n - 1 in the subnet."""
    subnet = _check_network(network)
    if not re.fullmatch(r"[0-9]+", str(count)) or int(count) < 1:
        raise VmNetworkError(f"the VM count must be a whole number >= 1, got '{count}'")
    limit = int(network["max_vms"])
    if int(count) > limit:
        raise VmNetworkError(f"the VM count {count} exceeds shoplab_vm_network.max_vms ({limit})")
    first = int(network["first_offset"])
    host = ipaddress.IPv4Address(network["host_address"])
    vms = []
    for index in range(1, int(count) + 1):
        address = subnet.network_address + first + index - 1
        if address not in subnet or address in (subnet.broadcast_address, host):
            raise VmNetworkError(
                f"shoplab_vm_network: VM {index} would get {address}, not a free host address of {subnet} "
                "(first_offset + max_vms - 1 must stay inside it)"
            )
        vms.append(
            {
                "index": index,
                "name": f"{prefix}-{index}",
                "address": str(address),
                "mac": f"{network['mac_prefix'].lower()}:{index:02x}",
            }
        )
    return vms


def shoplab_vm_netmask(network: dict) -> str:
    """The VM network's netmask (libvirt's <ip netmask=...>)."""
    return str(_check_network(network).netmask)


def shoplab_ssh_argv(host: Mapping, name: str) -> list[str]:
    """ssh to lab host `name` as Ansible reaches it, from its variables `host` (address, user, key, port,
    the inventory's common arguments); the command to run there follows, after `--`. Bench (a restock's
    token, a cleanup in the VM) and the tests (labhost.ssh_argv) both log in this way."""
    key = host.get("ansible_ssh_private_key_file") or host.get("ansible_private_key_file")
    return [
        "ssh",
        *shlex.split(host.get("ansible_ssh_common_args") or ""),
        # A VM that goes away (a reboot) ends the connection within 15 s rather than never.
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=3",
        *(["-i", str(key)] if key else []),
        "-p", str(host.get("ansible_port") or 22),
        f"{host.get('ansible_user') or 'root'}@{host.get('ansible_host') or name}",
    ]  # fmt: skip


class FilterModule:
    """Ansible filters: `shoplab_vms`, `shoplab_vm_netmask`, `shoplab_ssh_argv`."""

    def filters(self):
        return {
            "shoplab_vms": shoplab_vms,
            "shoplab_vm_netmask": shoplab_vm_netmask,
            "shoplab_ssh_argv": shoplab_ssh_argv,
        }
