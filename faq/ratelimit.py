"""Per-client rate limits in the Django cache (Redis), failing open: a cache outage must not stop customers."""
from __future__ import annotations

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)


def allow(*, scope: str, client: str, limit: int, window_seconds: int = 60) -> bool:
    """True while `client` made at most `limit` calls of `scope` in the current fixed window."""
    window = int(time.time() // window_seconds)
    key = f"ratelimit:{scope}:{client}:{window}"
    try:
        if cache.add(key, 1, timeout=window_seconds + 1):
            return True
        return cache.incr(key) <= limit
    except Exception as error:  # noqa: BLE001 - any cache failure: serve rather than refuse
        logger.warning("rate limit cache unavailable, allowing request: %s", error)
        return True
