"""Every rate limit of the service, on Django REST framework's throttles (the public form uses them too).

Callers without an account are counted by their client address (config.client_address, which honours
TRUSTED_PROXY_COUNT); token and session callers by their user. The counts live in the shared cache (Redis);
while it cannot be reached each process counts in its own memory, so an outage loosens the limits (a
client may get its limit once per process) instead of lifting them.

The rule is DRF's (a sliding window: the requests allowed in the last `duration` seconds). In Redis it is
one atomic script per throttle (a sorted set of the allowed requests' times), instead of DRF's read and
write of the whole pickled history: one round trip, and two workers cannot both count on a stale list.
"""
from __future__ import annotations

import logging
import random
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.commands.core import Script
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .client_address import client_address

logger = logging.getLogger(__name__)

# KEYS[i]: the times of one client's allowed requests in one window. ARGV: now, then for each key its duration,
# limit and a new member. Returns, for each key in turn, 1 and "0" when the request is allowed (and counted
# there), else 0 and the seconds until the oldest one leaves. Each window counts on its own, as DRF's do.
SLIDING_WINDOW_SCRIPT = """
local now = tonumber(ARGV[1])
local result = {}
for position, key in ipairs(KEYS) do
  local duration, limit = tonumber(ARGV[position * 3 - 1]), tonumber(ARGV[position * 3])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - duration)
  if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, ARGV[position * 3 + 1])
    redis.call('EXPIRE', key, math.ceil(duration))
    result[#result + 1] = 1
    result[#result + 1] = '0'
  else
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    result[#result + 1] = 0
    result[#result + 1] = tostring(tonumber(oldest[2]) + duration - now)
  end
end
return result
"""
_script: Script | None = None


def count_in_redis(backend: RedisCache, key: str, *, now: float, duration: int, limit: int) -> tuple[bool, float]:
    """(allowed, seconds to wait) for one request of `key` under `limit` per `duration`, counted if allowed."""
    return count_many_in_redis(backend, [(key, duration, limit)], now=now)[0]


def count_many_in_redis(backend: RedisCache, windows: list[tuple[str, int, int]], *,
                        now: float) -> list[tuple[bool, float]]:
    """count_in_redis for several (key, duration, limit) windows in one round trip, each counted on its own."""
    global _script
    # The backend's own client (and key prefix): Django's RedisCache has no public way to run a script.
    client = backend._cache.get_client(windows[0][0], write=True)
    if _script is None:
        _script = Script(client, SLIDING_WINDOW_SCRIPT)
    arguments: list = [repr(now)]
    for _, duration, limit in windows:
        arguments += [duration, limit, f"{now!r}-{random.getrandbits(48)}"]
    answer = _script(keys=[backend.make_and_validate_key(key) for key, _, _ in windows], args=arguments,
                     client=client)
    return [(bool(answer[position]), float(answer[position + 1])) for position in range(0, len(answer), 2)]


class SharedCacheWithLocalFallback:
    """The get/set that DRF's throttles use, on the shared cache, falling back to this process's memory."""

    def __init__(self) -> None:
        self.local = LocMemCache("throttle-fallback", {"MAX_ENTRIES": 50_000})

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return cache.get(key, default)
        except Exception as error:  # noqa: BLE001 - any cache failure: count locally rather than not at all
            logger.warning("rate-limit cache unavailable, counting in process memory: %s", error)
            return self.local.get(key, default)

    def set(self, key: str, value: Any, timeout: int | None = None) -> None:
        try:
            cache.set(key, value, timeout)
        except Exception:  # noqa: BLE001 - already logged by get() for this request
            self.local.set(key, value, timeout)


THROTTLE_CACHE = SharedCacheWithLocalFallback()


class ServiceThrottle(SimpleRateThrottle):
    """A scope's rate from settings at call time (tests and operators may change it), counted in Redis by
    count_in_redis; with another shared cache, DRF's own way in THROTTLE_CACHE."""

    cache = THROTTLE_CACHE
    cache_format = "throttle-window_%(scope)s_%(ident)s"  # a sorted set, not DRF's pickled list
    redis_wait: float | None = None

    def get_rate(self) -> str:
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def applies_to(self, request) -> bool:
        """Whether this request counts against this limit at all."""
        return self.rate is not None

    def allow_request(self, request, view) -> bool:
        if not self.applies_to(request):
            return True
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            self.key = self.get_cache_key(request, view)
            if self.key is None:
                return True
            try:
                allowed, self.redis_wait = count_in_redis(backend, self.key, now=self.timer(),
                                                          duration=self.duration, limit=self.num_requests)
                return allowed
            except Exception as error:  # noqa: BLE001 - any cache failure: count locally rather than not at all
                logger.warning("rate-limit cache unavailable, counting in process memory: %s", error)
                return self.count_locally(request, view)
        return super().allow_request(request, view)

    def count_locally(self, request, view) -> bool:
        self.cache = THROTTLE_CACHE.local
        return SimpleRateThrottle.allow_request(self, request, view)

    def wait(self) -> float | None:
        return self.redis_wait if self.redis_wait is not None else super().wait()

    def get_ident(self, request) -> str:
        return client_address(request)

    def get_cache_key(self, request, view) -> str:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            ident = f"user-{user.pk}"
        else:
            ident = f"address-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class PerClientAddressThrottle(ServiceThrottle):
    """Counted by client address whoever is logged in: for public endpoints, where anyone may call."""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AnonymousThrottle(PerClientAddressThrottle):
    """Unauthenticated calls to any API (most are refused with 401, but each one still costs a lookup)."""

    scope = "anon"

    def applies_to(self, request) -> bool:
        return super().applies_to(request) and not (request.user is not None and request.user.is_authenticated)


class PerUserThrottle(ServiceThrottle):
    """Every token or session caller, per user, on every API."""

    scope = "user"

    def applies_to(self, request) -> bool:
        return super().applies_to(request) and request.user is not None and request.user.is_authenticated


class FaqMatchThrottle(PerUserThrottle):
    """POST /api/faq/match embeds the question: its own, lower rate per user."""

    scope = "faq_match"


class FaqPairsThrottle(PerUserThrottle):
    """POST /api/faq/pairs embeds two texts: its own, lower rate per user."""

    scope = "faq_pairs"


class PublicInquiryApiThrottle(PerClientAddressThrottle):
    """POST /api/faq/inquiries, open to anyone: per client address."""

    scope = "public_inquiries"


class InquiryFormThrottle(PerClientAddressThrottle):
    """Posts of the public form /ask/ (a plain Django view, which calls allow_request itself)."""

    scope = "inquiry_form"


class ThrottlesInOneRoundTrip:
    """An APIView mixin: its throttles counted in Redis by one script call, where DRF asks each in turn (one
    round trip per limit). Each limit still counts on its own; the refusal waits for the longest."""

    def check_throttles(self, request) -> None:
        throttles = self.get_throttles()
        backend = caches["default"]
        if not isinstance(backend, RedisCache) or not all(isinstance(t, ServiceThrottle) for t in throttles):
            return super().check_throttles(request)
        counted = []
        for throttle in throttles:
            key = throttle.get_cache_key(request, self) if throttle.applies_to(request) else None
            if key is not None:
                throttle.key = key
                counted.append(throttle)
        if not counted:
            return None
        try:
            results = count_many_in_redis(backend, [(t.key, t.duration, t.num_requests) for t in counted],
                                          now=counted[0].timer())
            refused = []
            for throttle, (allowed, wait) in zip(counted, results, strict=True):
                throttle.redis_wait = wait
                if not allowed:
                    refused.append(throttle)
        except Exception as error:  # noqa: BLE001 - any cache failure: count locally rather than not at all
            logger.warning("rate-limit cache unavailable, counting in process memory: %s", error)
            refused = [throttle for throttle in counted if not throttle.count_locally(request, self)]
        if refused:
            waits = [wait for wait in (throttle.wait() for throttle in refused) if wait is not None]
            self.throttled(request, max(waits, default=None))
        return None
