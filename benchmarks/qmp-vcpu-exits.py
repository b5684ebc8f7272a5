#!/usr/bin/env python3
"""Prints the sum of KVM's "exits" statistic over a QEMU VM's vCPUs, read through QMP's
query-stats (QEMU >= 7.1) on the Unix socket given as the only argument."""
import json
import socket
import sys


def main() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(sys.argv[1])
        replies = connection.makefile("r")

        def ask(command: dict) -> dict:
            connection.sendall(json.dumps(command).encode() + b"\n")
            while True:
                reply = json.loads(replies.readline())
                if "return" in reply or "error" in reply:
                    return reply

        json.loads(replies.readline())  # greeting
        ask({"execute": "qmp_capabilities"})
        reply = ask({"execute": "query-stats", "arguments": {"target": "vcpu", "providers": [{"provider": "kvm", "names": ["exits"]}]}})
        if "error" in reply:
            sys.exit(f"qmp-vcpu-exits: {reply['error'].get('desc', reply['error'])}")
        total = 0
        for vcpu in reply["return"]:
            for stat in vcpu.get("stats", []):
                if stat.get("name") == "exits":
                    total += int(stat["value"])
        print(total)


if __name__ == "__main__":
    main()
