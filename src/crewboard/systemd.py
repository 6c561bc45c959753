"""The systemd notify protocol (``sd_notify``): a datagram of ``KEY=VALUE``
lines to ``$NOTIFY_SOCKET``. A no-op when not run by systemd."""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: object) -> bool:
        """Send ``READY=1``-style fields (``notify(READY=1, STATUS="...")``).
        Never raises: systemd being away must not take the service down."""
        if self._sock is None or not self.address:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        try:
            self._sock.sendto(message, address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
