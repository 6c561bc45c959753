"""Deciding which addresses the ``http_get`` tool may connect to.

A target is vetted before any connection: its host is resolved (through an
injectable resolver) and every address it resolves to must be public. Loopback,
link-local, private (RFC 1918, ULA, CGNAT), unspecified, multicast and reserved
addresses are refused unless the operator's allow-list (``CREWBOARD_HTTP_ALLOW``,
the spec's ``limits.httpAllow``) names the host or a network holding the address.
The caller then connects to the vetted address itself, so a second DNS answer
cannot swap in another one (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from crewboard.runner.tools.base import Resolver, ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Entries are host names (``intranet.example``), addresses or CIDRs."""
        hosts: set[str] = set()
        networks = []
        for entry in entries:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(address in n for n in self.networks)


def classify(address: IPAddress) -> str | None:
    """Why an address is not a public one, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return classify(address.ipv4_mapped)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved"
    return None


def vet(host: str, port: int, allow: AllowList, resolver: Resolver) -> IPAddress:
    """The address to connect to for ``host``, or a ToolError saying why not."""
    bare = host.strip("[]")
    try:
        addresses = [ipaddress.ip_address(bare)]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(bare, port)]
    if not addresses:
        raise ToolError(f"{host!r} has no address")
    for address in addresses:
        why = classify(address)
        if why is not None and not allow.allows(bare, address):
            raise ToolError(
                f"refused: {host} is {address}, a {why} address; fetching it needs the "
                "operator to allow it (CREWBOARD_HTTP_ALLOW)"
            )
    return addresses[0]
