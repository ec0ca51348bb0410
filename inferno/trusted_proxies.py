"""The client behind trusted proxies: X-Forwarded-For read from the right, past the proxies' own addresses.

Each proxy appends the address it was connected from, so the entries on the right were written by proxies
we trust and everything left of the first address that is not one of theirs was written by the client (who
may write anything). With no trusted proxies the header is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        """From addresses or CIDR networks ("10.0.0.0/8", "127.0.0.1"); ValueError names a bad one."""
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return cls(tuple(networks))

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The address of the client: peer itself unless peer is a trusted proxy, else the right-most
        X-Forwarded-For entry that is not one (forwarded_for: the header's values, in order)."""
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop if _ip(hop) is not None else peer
        # Every hop is a proxy of ours: the left-most is as far back as the chain goes.
        return hops[0] if hops and _ip(hops[0]) is not None else peer


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address text spells, or None when it spells none."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
