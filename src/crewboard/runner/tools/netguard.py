"""Deciding which addresses the ``http_get`` tool may connect to.

A target is vetted before any connection: its host is resolved (through an
injectable resolver) and every address it resolves to must be public. Loopback,
link-local, private (RFC 1918, ULA, CGNAT), unspecified, multicast and reserved
addresses are refused, and so is an IPv6 address that carries one of those as
IPv4 inside it (IPv4-mapped, NAT64, 6to4, Teredo), unless the operator's
allow-list (``CREWBOARD_HTTP_ALLOW``, the spec's ``limits.httpAllow``) names the
host or a network holding the address.
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
# NAT64's well-known prefix: the last 32 bits are the IPv4 address reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return classify(inner)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "private"
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


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, if it is a way of reaching one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
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
