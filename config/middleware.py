"""Answer 503 with a clear message while PostgreSQL is unreachable, instead of a 500 page."""
from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

MESSAGE = "The database is unavailable; please retry in a moment. Nothing you sent before this was lost."


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable while serving %s: %s", request.path, exception)
        response = JsonResponse({"detail": MESSAGE}, status=503)
        response["Retry-After"] = "5"
        return response
