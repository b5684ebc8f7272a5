#!/usr/bin/env python3
"""Prints KVM's per-vCPU statistics of a running VM as "NAME=v0,v1,..." (one field per NAME,
vCPUs in order), read from QEMU's QMP socket (query-stats, QEMU >= 7.1) or hvctl's control
socket (hvctl stats):  vcpu-stats.py qmp:SOCKET|hvctl:SOCKET NAME..."""
import json
import socket
import subprocess
import sys


def from_qmp(path: str, names: list[str]) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(path)
        replies = connection.makefile("r")

        def ask(command: dict) -> dict:
            connection.sendall(json.dumps(command).encode() + b"\n")
            while True:
                reply = json.loads(replies.readline())
                if "return" in reply or "error" in reply:
                    return reply

        json.loads(replies.readline())  # greeting
        ask({"execute": "qmp_capabilities"})
        reply = ask({"execute": "query-stats", "arguments": {"target": "vcpu", "providers": [{"provider": "kvm", "names": names}]}})
        if "error" in reply:
            sys.exit(f"vcpu-stats: {reply['error'].get('desc', reply['error'])}")
        # QEMU lists vCPUs by QOM path (/machine/unattached/device[N]); N follows creation order.
        vcpus = sorted(reply["return"], key=lambda vcpu: int(vcpu.get("qom-path", "[0]").rsplit("[", 1)[-1].rstrip("]")))
        return [{stat["name"]: int(stat["value"]) for stat in vcpu.get("stats", [])} for vcpu in vcpus]


def from_hvctl(path: str, hvctl: str) -> list[dict]:
    reply = subprocess.run([hvctl, "stats", "--socket", path], capture_output=True, text=True)
    if reply.returncode != 0:
        sys.exit(f"vcpu-stats: {reply.stderr.strip()}")
    document = json.loads(reply.stdout)
    vm = document["vms"][0] if "vms" in document else document
    return [vcpu["kvm"] for vcpu in vm["vcpus"]]


def main() -> None:
    source, names = sys.argv[1], sys.argv[2:]
    kind, _, path = source.partition(":")
    if kind == "qmp":
        vcpus = from_qmp(path, names)
    elif kind == "hvctl":
        vcpus = from_hvctl(path, subprocess.os.environ.get("HVCTL", "hvctl"))
    else:
        sys.exit("usage: vcpu-stats.py qmp:SOCKET|hvctl:SOCKET NAME...")
    print(" ".join(f"{name}=" + ",".join(str(vcpu.get(name, 0)) for vcpu in vcpus) for name in names))


if __name__ == "__main__":
    main()
