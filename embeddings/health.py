"""Liveness and readiness.

Liveness (`/healthz`, what compose's and a load balancer's probes call): the web process answers. It reads
nothing, calls nothing and shows nothing internal, so it stays fast while the embedding endpoint, the
database or the broker hang, and restarting the web (what a failing liveness probe does) is never the
answer to someone else's outage. It is answered first in the middleware chain: the probe speaks plain http
to the container by its own address, which neither the https redirect nor ALLOWED_HOSTS would let through.

Readiness (`/readyz`, staff only): the embedding endpoint, the database and the broker, each checked now.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

LIVENESS_PATH = "/healthz"


def liveness_response() -> JsonResponse:
    response = JsonResponse({"status": "ok"})
    response["Cache-Control"] = "no-store"
    return response


class LivenessProbeMiddleware:
    """Answer GET/HEAD /healthz before host validation, the https redirect, sessions and the database."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == LIVENESS_PATH and request.method in ("GET", "HEAD"):
            return liveness_response()
        return self.get_response(request)


def database_health() -> dict:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means not ready; the reason goes to staff
        return {"reachable": False, "error": f"{type(error).__name__}: {error}"}
    return {"reachable": True, "error": None}


def broker_health(*, timeout_seconds: float = 2.0) -> dict:
    import redis
    from django.conf import settings

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=timeout_seconds,
                                      socket_connect_timeout=timeout_seconds)
        client.ping()
    except Exception as error:  # noqa: BLE001
        return {"reachable": False, "error": f"{type(error).__name__}: {error}"}
    return {"reachable": True, "error": None}


def readiness_report() -> dict:
    """The embedding endpoint report (embeddings.selectors.endpoint_health) with the database and broker.

    `status`: "ok"; "degraded" when only the embedding endpoint is unreachable (pages work, embedding work
    waits as pending items); "unavailable" when the database or the broker is down; "misconfigured" when the
    endpoint serves vectors the spaces cannot use.
    """
    from .selectors import endpoint_health

    database = database_health()
    broker = broker_health()
    if database["reachable"]:
        report = endpoint_health()
    else:
        report = {"status": "degraded", "endpoint": None}
    report["database"], report["broker"] = database, broker
    if not (database["reachable"] and broker["reachable"]):
        report["status"] = "unavailable"
    return report
