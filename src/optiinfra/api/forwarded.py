"""Who is calling, and over what, when OptiInfra runs behind reverse proxies.

`X-Forwarded-For` and `X-Forwarded-Proto` are believed only from the proxies `OPTIINFRA_TRUSTED_PROXIES` names
(comma-separated addresses or networks, e.g. `127.0.0.1,10.0.0.0/8`); from anyone else they are ignored, since any
client can send them. The client is the rightmost address of `X-Forwarded-For` that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from optiinfra.errors import ConfigurationError

TRUSTED_PROXIES_ENV = "OPTIINFRA_TRUSTED_PROXIES"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> TrustedProxies:
        networks = []
        for part in (piece.strip() for piece in raw.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError as error:
                raise ConfigurationError(
                    f"{TRUSTED_PROXIES_ENV} names {part!r}, which is not an IP address or network.",
                    fix=f"Set it like: export {TRUSTED_PROXIES_ENV}=127.0.0.1,10.0.0.0/8",
                ) from error
        return cls(tuple(networks))

    @classmethod
    def from_environment(cls) -> TrustedProxies:
        return cls.parse(os.environ.get(TRUSTED_PROXIES_ENV, ""))

    def trusts(self, host: str | None) -> bool:
        address = _address(host) if host else None
        return address is not None and any(address in network for network in self.networks)

    def client_address(self, connection: HTTPConnection) -> str:
        """The calling client's address: the peer, or, behind trusted proxies, the client they forwarded for."""
        peer = connection.client.host if connection.client else "unknown"
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in ",".join(connection.headers.getlist("x-forwarded-for")).split(",")]
        for hop in reversed([hop for hop in hops if hop]):
            if _address(hop) is None:
                break  # a malformed entry: trust nothing further left
            if not self.trusts(hop):
                return hop
        return peer

    def is_https(self, connection: HTTPConnection) -> bool:
        """Whether the client reached us over TLS: directly, or at a trusted proxy that says so."""
        if connection.url.scheme == "https":
            return True
        if not self.trusts(connection.client.host if connection.client else None):
            return False
        proto = connection.headers.get("x-forwarded-proto", "")
        return proto.split(",")[0].strip().lower() == "https"
