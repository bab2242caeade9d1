"""GET /healthz (liveness, public, no I/O) and GET /readyz (readiness, staff: endpoint, database, broker)."""
from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .health import liveness_response, readiness_report


@require_GET
def healthz(request) -> JsonResponse:
    # Normally answered by embeddings.health.LivenessProbeMiddleware before this view is reached.
    return liveness_response()


@never_cache
@require_GET
@staff_member_required
def readyz(request) -> JsonResponse:
    # Staff only: the report names internal URLs and error texts. "degraded" (endpoint unreachable) is still
    # 200: pages work and embedding work waits in PostgreSQL. Unusable vectors or no database/broker: 503.
    report = readiness_report()
    return JsonResponse(report, status=503 if report["status"] in ("misconfigured", "unavailable") else 200)
