"""Outbound endpoints: which URLs OptiInfra calls, checked when they are stored and again when they are called.

Every outbound call to a URL that someone other than the operator chose (an agent's webhook endpoint today; alert
webhooks and metric sources later) goes through this module:

- `check_url` is the static check, made when the URL is registered and again before each call: http or https
  only, a host, no user-info, no fragment, no characters a URL parser could read two ways, and no host that is
  by itself a loopback, link-local, private, multicast, unspecified or reserved address (IP literals in any
  notation, `localhost` and `*.localhost`).
- `post` makes the call. Its connection layer resolves the name once, refuses the call if any address the name
  resolves to is in those ranges (IPv4, IPv6, and IPv4 embedded in IPv6: mapped, NAT64, 6to4, Teredo), connects
  to one of the checked addresses, and checks the address actually connected to once more; TLS still verifies
  the certificate against the name (SNI and the Host header carry the name). So a name that resolves to a public
  address when checked and to an internal one a moment later (DNS rebinding) is caught where it matters: at the
  connection. Redirects are never followed (the caller decides what a 3xx means); proxies from the environment
  are not used, so the address checked is the address reached.

The operator may allow private and loopback addresses (a lab, agents on the same host) with
`OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS=1`; the setting is read at each check, so changing it takes effect at the next
call. Even then only http and https URLs without user-info or fragment are called.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import httpcore

from optiinfra.config import private_endpoints_allowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024

# A host name: labels of letters, digits and hyphens (IDNA names in their xn-- form), optionally a trailing dot.
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
# Characters that have no business in an endpoint URL and that parsers disagree about.
_SUSPICIOUS = re.compile(r"[\x00-\x20\x7f\\]")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeEndpointError(ValueError):
    """The URL may not be called; the message says why, in words fit for an API error or a run's error."""


@dataclass(frozen=True)
class Endpoint:
    """A checked URL, split into the parts the call is built from (so nothing is parsed twice)."""

    url: str
    scheme: str
    host: str  # lower case, without brackets or trailing dot
    port: int
    target: str  # path and query, as sent on the request line
    literal_address: IPAddress | None  # the host, when it is an IP literal

    @property
    def display(self) -> str:
        """The URL without its query string, for messages (a query may carry a token)."""
        host = f"[{self.host}]" if isinstance(self.literal_address, ipaddress.IPv6Address) else self.host
        return f"{self.scheme}://{host}:{self.port}{self.target.split('?', 1)[0]}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if isinstance(self.literal_address, ipaddress.IPv6Address) else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Response:
    """What a call brought back: the status and at most `max_response_bytes` of body."""

    status_code: int
    body: bytes


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries: IPv4-mapped, NAT64 well-known prefix, 6to4, Teredo."""
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def blocked_reason(address: IPAddress) -> str | None:
    """Why OptiInfra will not call this address by default ("a loopback address", …), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        for inner in embedded_ipv4(address):
            reason = blocked_reason(inner)
            if reason is not None:
                return f"an IPv6 address carrying {inner}, {reason}"
        if address.ipv4_mapped is not None or address in _NAT64:
            # These reach exactly the IPv4 address they carry (a dual-stack socket, a DNS64 network): judge that.
            return None
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "a site-local address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        # Shared address space (100.64.0.0/10), documentation and benchmarking ranges: not reachable publicly.
        (not address.is_global, "a non-public address"),
    ]
    for matched, reason in checks:
        if matched:
            return reason
    return None


def _literal_address(host: str) -> IPAddress | None:
    """The address a host stands for without any lookup: an IP literal in standard or legacy IPv4 notation."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton reads the forms a resolver would also accept: 127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _allowed(allow_private: bool | None) -> bool:
    return private_endpoints_allowed() if allow_private is None else allow_private


def check_url(url: str, *, allow_private: bool | None = None) -> Endpoint:
    """Check a URL without any network access; `UnsafeEndpointError` says what is wrong.

    `allow_private` None means: as the operator's setting says (`OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS`).
    """
    if _SUSPICIOUS.search(url):
        raise UnsafeEndpointError("The URL contains spaces, control characters or backslashes.")
    if "#" in url:
        raise UnsafeEndpointError("The URL has a fragment ('#'); endpoints take none.")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeEndpointError(f"The URL cannot be parsed: {error}.") from error
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeEndpointError(f"The URL must use http or https, not {parts.scheme or 'no scheme'!r}.")
    if "@" in parts.netloc:
        raise UnsafeEndpointError("The URL carries user-info ('user:password@'); send credentials another way.")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise UnsafeEndpointError("The URL has no host.")
    host = raw_host.rstrip(".")
    literal = _literal_address(host)
    if literal is None and not _HOST_NAME.match(host):
        raise UnsafeEndpointError(f"The host {raw_host!r} is not a valid host name or IP address.")
    endpoint = Endpoint(
        url=url,
        scheme=scheme,
        host=str(literal) if isinstance(literal, ipaddress.IPv6Address) else host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        literal_address=literal,
    )
    if not _allowed(allow_private):
        if literal is not None:
            reason = blocked_reason(literal)
            if reason is not None:
                raise UnsafeEndpointError(_refusal(f"{raw_host} is {reason}"))
        elif host == "localhost" or host.endswith(".localhost"):
            raise UnsafeEndpointError(_refusal(f"{raw_host} is a loopback name"))
    return endpoint


def _refusal(what: str) -> str:
    return (
        f"The endpoint is refused: {what}. OptiInfra calls only public addresses unless the operator sets "
        "OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS=1."
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to for TCP, in the resolver's order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise httpcore.ConnectError(f"the name {host!r} does not resolve") from error
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonical, sockaddr in infos:
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"): the zone does not change the address's range.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network layer, connecting only to addresses that pass `blocked_reason` (unless allowed).

    The name is resolved once per connection; every address is checked before any is tried, then the address
    the socket is actually connected to is checked again.
    """

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.SyncBackend()

    def _check(self, host: str, address: IPAddress) -> None:
        if self.allow_private:
            return
        reason = blocked_reason(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} resolves to {address}, which"
            raise UnsafeEndpointError(_refusal(f"{shown} is {reason}"))

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        if not addresses:
            raise httpcore.ConnectError(f"the name {host!r} has no address")
        for address in addresses:
            self._check(host, address)
        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
                continue
            try:
                peer = stream.get_extra_info("socket").getpeername()[0]
                self._check(host, ipaddress.ip_address(str(peer).split("%", 1)[0]))
            except BaseException:
                stream.close()
                raise
            return stream
        assert last_error is not None
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UnsafeEndpointError("Outbound calls never use Unix sockets.")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def post(
    url: str,
    content: bytes,
    *,
    headers: Mapping[str, str],
    timeout: float,
    allow_private: bool | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Response:
    """POST `content` to a checked URL; the answer is returned whatever its status, redirects included.

    Raises `UnsafeEndpointError` when the URL or the address it leads to is refused, `httpcore.TimeoutException`
    or `httpcore.NetworkError` when the call fails, and `ResponseTooLargeError` when the body exceeds the limit.
    """
    return request(
        "POST",
        url,
        content,
        headers=headers,
        timeout=timeout,
        allow_private=allow_private,
        max_response_bytes=max_response_bytes,
    )


def get(
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    allow_private: bool | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Response:
    """GET a checked URL, with the same guarantees and errors as `post`."""
    return request(
        "GET",
        url,
        None,
        headers=headers,
        timeout=timeout,
        allow_private=allow_private,
        max_response_bytes=max_response_bytes,
    )


def request(
    method: str,
    url: str,
    content: bytes | None,
    *,
    headers: Mapping[str, str],
    timeout: float,
    allow_private: bool | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Response:
    """Call a checked URL (see `post`); `content` None sends no body."""
    allowed = _allowed(allow_private)
    endpoint = check_url(url, allow_private=allowed)
    request_headers = [
        ("Host", endpoint.host_header),
        *([("Content-Length", str(len(content)))] if content is not None else []),
        ("User-Agent", "optiinfra"),
        *headers.items(),
    ]
    timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    with httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(), network_backend=GuardedBackend(allowed), retries=0
    ) as pool:
        target = httpcore.URL(scheme=endpoint.scheme, host=endpoint.host, port=endpoint.port, target=endpoint.target)
        with pool.stream(
            method, target, headers=request_headers, content=content, extensions={"timeout": timeouts}
        ) as response:
            body = bytearray()
            for chunk in response.iter_stream():
                body.extend(chunk)
                if len(body) > max_response_bytes:
                    raise ResponseTooLargeError(f"the answer is longer than {max_response_bytes} bytes")
            return Response(status_code=response.status, body=bytes(body))


class ResponseTooLargeError(Exception):
    """The endpoint answered with more than the caller accepts."""
