"""The first process of a simulated host (pid 1 of its pid namespace).

Run by ``unshare --uts --pid --mount --fork --mount-proc`` as
``host_init.py HOSTNAME DATA HOME -- COMMAND...``: it names the host, binds
the host's own data folder DATA over HOME (the path every host uses for its
data home, so a path written on one host means that host's file), starts
COMMAND, passes SIGTERM and SIGINT on to it, and reaps every process of the
host, orphans included (a runner whose supervisor was killed stays until it
exits). It ends, with COMMAND's exit status, once no process of the host is
left; its end takes down whatever the kernel still finds in the namespace.

Plain standard library: it runs before anything of crewboard is set up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys


def main(argv: list[str]) -> int:
    hostname, data, home, separator, *command = argv
    if separator != "--" or not command:
        print("usage: host_init.py HOSTNAME DATA HOME -- COMMAND...", file=sys.stderr)
        return 2
    socket.sethostname(hostname)
    subprocess.run(["mount", "--bind", data, home], check=True)
    child = subprocess.Popen(command)

    def pass_on(signum: int, _frame: object) -> None:
        if child.returncode is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    status = 1
    while True:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            return status
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(raw)
            status = child.returncode if child.returncode >= 0 else 128 - child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
