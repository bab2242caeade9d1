"""Hit and miss counters of the embedding cache: per process, and summed over all processes in Redis.

A hit is an input text answered without a model call; a miss is a distinct text sent to the model.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time

from django.core.cache import cache
from django.db import connection

logger = logging.getLogger(__name__)

# Counts reach Redis at most once per this many seconds per process (one increment per embedding call cost
# a Redis round trip on every match); cache_statistics() and process exit send what is still pending.
FLUSH_INTERVAL_SECONDS = 1.0

_lock = threading.Lock()
_process_counts = {"hits": 0, "misses": 0}
_pending: dict[str, int] = {}  # Redis key -> amount not yet added there
_last_flush = [0.0]


def _redis_keys() -> dict[str, str]:
    # Per database, as the cache itself is: test runs and the service then never mix their counts.
    database = connection.settings_dict["NAME"]
    return {"hits": f"embeddings:cache:{database}:hits", "misses": f"embeddings:cache:{database}:misses"}


def record_cache_use(*, hits: int, misses: int) -> None:
    keys = _redis_keys()
    with _lock:
        _process_counts["hits"] += hits
        _process_counts["misses"] += misses
        for name, amount in (("hits", hits), ("misses", misses)):
            if amount:
                _pending[keys[name]] = _pending.get(keys[name], 0) + amount
        due = time.monotonic() - _last_flush[0] >= FLUSH_INTERVAL_SECONDS
    if due:
        flush_to_redis()


def flush_to_redis() -> None:
    """Add this process's pending counts to the totals in Redis (kept for the next try when it is down)."""
    with _lock:
        pending = dict(_pending)
        _pending.clear()
        _last_flush[0] = time.monotonic()
    for key, amount in pending.items():
        try:
            _increment(key, amount)
        except Exception as error:  # noqa: BLE001 - statistics must never fail an embedding call
            logger.debug("cache statistics not recorded in Redis: %s", error)
            with _lock:
                _pending[key] = _pending.get(key, 0) + amount


def _increment(key: str, amount: int) -> None:
    try:
        cache.incr(key, amount)
    except ValueError:  # the key does not exist yet
        if not cache.add(key, amount, timeout=None):
            cache.incr(key, amount)


def cache_statistics() -> dict:
    """{'process': {...}, 'all_processes': {...}} with hits, misses and hit_rate (None before any use)."""
    with _lock:
        process = dict(_process_counts)
    flush_to_redis()
    try:
        totals = {name: int(cache.get(key) or 0) for name, key in _redis_keys().items()}
    except Exception:  # noqa: BLE001 - Redis down: report what this process knows
        totals = {"hits": None, "misses": None}
    return {"process": _with_rate(process), "all_processes": _with_rate(totals)}


def _with_rate(counts: dict) -> dict:
    hits, misses = counts["hits"], counts["misses"]
    if hits is None or hits + misses == 0:
        return {**counts, "hit_rate": None}
    return {**counts, "hit_rate": round(hits / (hits + misses), 4)}


def reset_process_statistics() -> None:
    with _lock:
        _process_counts.update(hits=0, misses=0)
        _pending.clear()


atexit.register(flush_to_redis)
