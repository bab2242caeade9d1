"""The client's address as this deployment can trust it, for rate limits and the admin login lockout.

Behind N trusted proxies that each append the address they saw to X-Forwarded-For, the N-th entry from the
right is the client as the outermost trusted proxy saw it; everything left of it was written by the client
and may be made up. With no proxy (TRUSTED_PROXY_COUNT=0, the default) the header is ignored entirely and
REMOTE_ADDR is the client: trusting the header there would let anyone pick their own rate-limit bucket.
"""
from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    remote_address = request.META.get("REMOTE_ADDR", "")
    trusted_proxies = settings.TRUSTED_PROXY_COUNT
    if trusted_proxies == 0:
        return remote_address
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry.strip()]
    if len(forwarded) < trusted_proxies:
        # The proxies did not write what they were configured to write: the connection did not come through
        # them (or one is misconfigured). Its own address is then the only thing known to be true.
        return remote_address
    candidate = forwarded[-trusted_proxies]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        # Not an address (a proxy that writes host names or ports): never a key an attacker could vary.
        return remote_address
    return candidate
