"""GET /healthz: the embedding endpoint's reachability, model and dimension, and whether they fit the spaces."""
from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .selectors import endpoint_health


@never_cache
@require_GET
def healthz(request) -> JsonResponse:
    # Unauthenticated on purpose: load balancers and orchestrators call it. It reveals no data, only wiring.
    # An unreachable endpoint is "degraded" but still 200: pages work and embedding work waits in PostgreSQL,
    # so restarting web would not help. An endpoint serving unusable vectors is 503.
    report = endpoint_health()
    return JsonResponse(report, status=503 if report["status"] == "misconfigured" else 200)
