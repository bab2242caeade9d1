"""CSV downloads that are safe to open in a spreadsheet.

Exports echo what declarants and customers typed. A cell starting with =, +, -, @, a tab or a carriage
return is run as a formula by Excel and LibreOffice (CSV injection, OWASP), so such a cell is written with
a leading apostrophe: the spreadsheet shows the text, the apostrophe hidden, and runs nothing.
"""
from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Sequence

from django.http import StreamingHttpResponse

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_download(*, header: Sequence[str], rows: Iterable[Sequence[object]], file_name: str) -> StreamingHttpResponse:
    """Stream `rows` as a CSV attachment, every cell made spreadsheet-safe."""
    writer = csv.writer(_Echo())
    lines = itertools.chain(
        [writer.writerow(header)],
        (writer.writerow([spreadsheet_safe(cell) for cell in row]) for row in rows),
    )
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    return response
