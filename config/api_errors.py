"""The API's exception handler: DRF's, plus a clear 400 for a body above DATA_UPLOAD_MAX_MEMORY_SIZE.

Django raises RequestDataTooBig when DRF reads such a body; left alone it becomes Django's bare HTML
"Bad Request (400)", which tells an API client nothing about what to change.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = ParseError(f"Request body is larger than the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; "
                         "send fewer items per request.")
    return exception_handler(exc, context)
