"""The JSON parser of every API: a body nested deeper than JSON_MAX_DEPTH is refused with 400 and a message
saying so, before it is decoded.

Python's json module recurses once per level: a body of 1,000 nested brackets raised RecursionError (HTTP
500) on every JSON endpoint. The size bound is Django's DATA_UPLOAD_MAX_MEMORY_SIZE, checked when DRF reads
the body for this parser; config.api_errors turns it into a 400 that names the limit.
"""
from __future__ import annotations

import codecs
import json
import re

import numpy
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

# A JSON string literal (escapes included), unrolled so that long strings are matched without backtracking.
STRING_LITERAL = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
OPENING = numpy.frombuffer(b"[{", dtype=numpy.uint8)
CLOSING = numpy.frombuffer(b"]}", dtype=numpy.uint8)


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, brackets inside strings not counted.

    Counted over the bytes with numpy (a running sum of +1 per opening and -1 per closing bracket), so a
    10 MB body costs milliseconds whatever its shape.
    """
    structure = numpy.frombuffer(STRING_LITERAL.sub(b"", body), dtype=numpy.uint8)
    steps = numpy.isin(structure, OPENING).astype(numpy.int32) - numpy.isin(structure, CLOSING).astype(numpy.int32)
    return int(numpy.cumsum(steps).max(initial=0))


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        body = stream.read()
        if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            try:
                body = codecs.decode(body, encoding).encode("utf-8")
            except ValueError as error:
                raise ParseError(f"Request body is not valid {encoding}: {error}") from error
        depth = nesting_depth(body)
        if depth > settings.JSON_MAX_DEPTH:
            raise ParseError(
                f"JSON nested {depth} levels deep; at most {settings.JSON_MAX_DEPTH} levels are accepted."
            )
        try:
            return json.loads(body, parse_constant=self.reject_constant if self.strict else None)
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from error

    @staticmethod
    def reject_constant(name: str):
        raise ValueError(f"{name} is not valid JSON")
