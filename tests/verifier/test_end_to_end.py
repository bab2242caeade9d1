from __future__ import annotations

import csv
import io
import random

import pytest

from verifier.models import DeclarationBatch, DeclarationItem, ImportRowError, Verdict
from verifier.pipeline import process_pending
from verifier.services import create_batch, import_declaration_file

pytestmark = pytest.mark.django_db


def test_it_imports_10000_rows_with_1_percent_bad_reporting_each_bad_row_and_verifying_every_good_one(
    knowledge_base, client, staff_user,
):
    rows = 10_000
    bad_rows = set(random.Random(4).sample(range(1, rows + 1), rows // 100))
    codes = list(knowledge_base)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "item_no", "description", "hs_code", "quantity", "currency", "port"])
    for number in range(1, rows + 1):
        code = codes[number % len(codes)]
        if number in bad_rows:
            writer.writerow([f"D{number}", 1, f"item {number}", f"84X{number % 10}", 1, "USD", "Ningbo"])
        else:
            writer.writerow([f"D{number}", 1, f"{knowledge_base[code]} lot {number}", code, number, "USD", "Ningbo"])
    data = io.BytesIO(text.getvalue().encode("utf-8"))
    batch = create_batch(source=DeclarationBatch.Source.FILE, file_name="big.csv")

    report = import_declaration_file(batch=batch, stream=data, file_name="big.csv")
    process_pending()

    assert (report.rows_read, report.items_created, report.rows_rejected) == (rows, rows - len(bad_rows), len(bad_rows))
    errors = ImportRowError.objects.filter(batch=batch)
    assert set(errors.values_list("row_number", flat=True)) == bad_rows
    assert all("is not an HS code" in reason for reason in errors.values_list("reason", flat=True))
    verified = DeclarationItem.objects.filter(batch=batch, status=DeclarationItem.Status.VERIFIED)
    assert verified.count() == rows - len(bad_rows)
    assert Verdict.objects.filter(item__batch=batch).count() == rows - len(bad_rows)
    batch.refresh_from_db()
    assert batch.status == DeclarationBatch.Status.DONE

    client.force_login(staff_user)
    download = client.get(f"/declarations/batches/{batch.pk}/errors.csv")
    body = b"".join(download.streaming_content).decode("utf-8")
    assert body.splitlines()[0] == "row_number,reason,raw"
    assert len(body.splitlines()) == len(bad_rows) + 1
