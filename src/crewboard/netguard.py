"""Deciding which addresses crewboard may connect to on a user's say-so: the
``http_get`` tool's fetches and the supervisor's webhook deliveries.

A target is vetted before any connection: its host is resolved (through an
injectable resolver) and every address it resolves to must be public. Loopback,
link-local, private (RFC 1918, ULA, CGNAT), unspecified, multicast and reserved
addresses are refused, and so is an IPv6 address that carries one of those as
IPv4 inside it (IPv4-mapped, NAT64, 6to4, Teredo), unless the operator's
allow-list names the host or a network holding the address
(``CREWBOARD_HTTP_ALLOW`` for the tool, ``CREWBOARD_WEBHOOK_ALLOW`` for webhooks).
The caller then connects to the vetted address itself, so a second DNS answer
cannot swap in another one (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# (host, port) -> IP address strings; injectable so tests never touch DNS.
Resolver = Callable[[str, int], list[str]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64's well-known prefix: the last 32 bits are the IPv4 address reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The target is not one crewboard may connect to: it does not resolve,
    or it is an internal address the operator has not allowed. The message
    says which, for the person who named the target."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, through the system's resolver."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"cannot resolve {host!r}: {exc}") from exc
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


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


def vet(
    host: str,
    port: int,
    allow: AllowList,
    resolver: Resolver,
    setting: str = "CREWBOARD_HTTP_ALLOW",
) -> IPAddress:
    """The address to connect to for ``host``, or AddressRefused saying why
    not (naming ``setting``, the allow-list that would let it through)."""
    bare = host.strip("[]")
    try:
        addresses = [ipaddress.ip_address(bare)]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(bare, port)]
    if not addresses:
        raise AddressRefused(f"{host!r} has no address")
    for address in addresses:
        why = classify(address)
        if why is not None and not allow.allows(bare, address):
            raise AddressRefused(
                f"refused: {host} is {address}, a {why} address; reaching it needs the "
                f"operator to allow it ({setting})"
            )
    return addresses[0]
