"""Which URLs an endpoint may have (SSRF): checked when it is registered and before every attempt.

In development any http(s) URL will do, loopback included (a receiver on the laptop). In
production a URL must be https and its host must resolve only to public addresses: never a
private, loopback, link-local (the cloud metadata service at 169.254.169.254), multicast,
reserved or unspecified one, so a registered endpoint cannot make Coffer call into its own
network. `COFFER_WEBHOOK_ALLOW_PRIVATE=true` lifts the address rule (a host app on the same
private network), never the https rule.

The check before each attempt catches a name that was public at registration and resolves
privately now (DNS rebinding); the connection then resolves again, so a resolver that answers
differently within that instant is not covered: an egress proxy is the complete defence.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

URL_LENGTH_MAX = 2048
ADDRESSES_MAX = 32  # how many resolved addresses are checked (and must all be public)

Resolver = Callable[[str, int], list[str]]


class RefusedUrl(ValueError):
    """A URL an endpoint may not have here; the message says why."""


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    https_only: bool
    public_only: bool

    @classmethod
    def of(cls, *, env: str, allow_private: bool) -> UrlPolicy:
        production = env == "production"
        return cls(https_only=production, public_only=production and not allow_private)


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos[:ADDRESSES_MAX]]


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check(url: str, policy: UrlPolicy, *, resolve: Resolver = _resolve) -> str:
    """`url` if an endpoint may have it under `policy`; RefusedUrl saying why otherwise."""
    if len(url) > URL_LENGTH_MAX:
        raise RefusedUrl(f"a URL has at most {URL_LENGTH_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedUrl("not a URL") from exc
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("the URL must be http or https")
    host = parts.hostname
    if not host:
        raise RefusedUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("credentials do not belong in the URL (they would be logged)")
    if policy.https_only and parts.scheme != "https":
        raise RefusedUrl("in production an endpoint must be https")
    if policy.public_only:
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise RefusedUrl(f"the host {host} does not resolve") from exc
        if not addresses:
            raise RefusedUrl(f"the host {host} does not resolve")
        private = [a for a in addresses if not _public(a)]
        if private:
            raise RefusedUrl(
                f"the host {host} resolves to a private, loopback or link-local address "
                "(set COFFER_WEBHOOK_ALLOW_PRIVATE=true if that is intended)"
            )
    return url


__all__ = ["RefusedUrl", "UrlPolicy", "check"]
