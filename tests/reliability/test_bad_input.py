"""A corpus of bad declaration files through the importer: located, readable errors; good rows kept; no crash.

Each file goes through verifier.services.import_declaration_file against the real
database, as an upload or the import command would send it.
"""
from __future__ import annotations

import codecs
import io
import json
import os

import pytest

from verifier import services
from verifier.models import DeclarationBatch, DeclarationItem, ImportRowError

pytestmark = pytest.mark.django_db

HEADER = "id,item_no,description,hs_code,quantity,value,currency\n"


def good_line(number: int, description: str = "") -> str:
    return f"D{number},1,{description or f'stainless steel bolt M{number}'},7318150000,10,25.50,USD\n"


def import_file(content: bytes | str, *, file_name: str):
    data = content.encode("utf-8") if isinstance(content, str) else content
    batch = services.create_batch(source=DeclarationBatch.Source.FILE, file_name=file_name)
    report = services.import_declaration_file(batch=batch, stream=io.BytesIO(data), file_name=file_name)
    batch.refresh_from_db()
    return batch, report


def errors_of(batch) -> list[ImportRowError]:
    return list(ImportRowError.objects.filter(batch=batch).order_by("row_number"))


def test_it_keeps_the_good_rows_of_a_truncated_csv_and_locates_the_cut_row():
    batch, report = import_file(HEADER + good_line(1) + good_line(2) + 'D3,1,"cut in the mid', file_name="cut.csv")
    assert report.items_created == 2
    [error] = errors_of(batch)
    assert error.row_number == 3
    assert "columns" in error.reason


def test_it_keeps_the_good_objects_before_the_point_where_a_json_array_is_cut():
    objects = [{"id": f"J{n}", "item_no": "1", "description": f"cotton towel {n}", "hs_code": "6302600000"}
               for n in range(1, 6)]
    truncated = json.dumps(objects, ensure_ascii=False)[:-40]
    batch, report = import_file(truncated, file_name="cut.json")
    assert "item 5" in batch.failure_reason or any(error.row_number == 5 for error in errors_of(batch))
    assert DeclarationItem.objects.filter(batch=batch).count() == 4


def test_it_rejects_each_malformed_json_line_by_line_number_and_keeps_the_rest():
    lines = [
        json.dumps({"id": "L1", "description": "ceramic mug", "hs_code": "6912001000"}),
        "{broken json",
        "[1, 2, 3]",
        json.dumps({"id": "L4", "description": "glass vase", "hs_code": "7013990000"}),
    ]
    batch, report = import_file("\n".join(lines) + "\n", file_name="items.jsonl")
    assert report.items_created == 2
    assert [(error.row_number, error.reason.split(":")[0]) for error in errors_of(batch)] == [
        (2, "not valid JSON"), (3, "expected a JSON object, found list"),
    ]


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "cp1252"])
def test_it_fails_a_file_in_an_unsupported_encoding_with_a_reason_and_creates_nothing(encoding):
    content = (HEADER + good_line(1, "café crème brûlée") + good_line(2, "naïve façade")).encode(encoding)
    batch, report = import_file(content, file_name="legacy.csv")
    assert batch.status == DeclarationBatch.Status.FAILED
    assert "UTF-8" in batch.failure_reason and "offset" in batch.failure_reason
    assert DeclarationItem.objects.filter(batch=batch).count() == 0


def test_it_reads_gb18030_files_as_chinese_customs_systems_write_them():
    batch, report = import_file((HEADER + good_line(1, "不锈钢螺栓 M8")).encode("gb18030"), file_name="gb.csv")
    assert report.items_created == 1
    assert DeclarationItem.objects.get(batch=batch).description_raw == "不锈钢螺栓 M8"


def test_it_reads_a_utf8_file_with_a_byte_order_mark():
    batch, report = import_file(codecs.BOM_UTF8 + (HEADER + good_line(1)).encode(), file_name="bom.csv")
    assert report.items_created == 1


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n" + os.urandom(4096),
    b"PK\x03\x04" + os.urandom(4096),  # a zip (an .xlsx) renamed .csv
    bytes(range(256)) * 16,
])
def test_it_fails_a_binary_file_with_a_reason_instead_of_crashing(content):
    batch, report = import_file(content, file_name="declarations.csv")
    assert batch.status == DeclarationBatch.Status.FAILED
    assert batch.failure_reason
    assert DeclarationItem.objects.filter(batch=batch).count() == 0


@pytest.mark.parametrize("content", [b"", b"   \n\r\n  "])
def test_it_fails_an_empty_file_saying_it_is_empty(content):
    batch, report = import_file(content, file_name="empty.csv")
    assert batch.status == DeclarationBatch.Status.FAILED
    assert "empty" in batch.failure_reason


def test_it_fails_a_csv_without_a_description_column_naming_the_columns_it_found():
    batch, report = import_file("id,name,code\nD1,bolt,7318\n", file_name="wrong-columns.csv")
    assert batch.status == DeclarationBatch.Status.FAILED
    assert "description" in batch.failure_reason and "name" in batch.failure_reason


def test_it_rejects_a_one_megabyte_field_by_row_and_keeps_the_other_rows():
    huge = "x" * 1_000_000
    batch, report = import_file(HEADER + good_line(1) + good_line(2, huge) + good_line(3), file_name="huge.csv")
    assert report.items_created == 2
    [error] = errors_of(batch)
    assert error.row_number == 2
    assert "description" in error.reason
    assert len(error.raw) <= 10_000  # the error keeps a sample of the row, not the megabyte


def test_it_rejects_a_one_megabyte_json_value_by_row_and_keeps_the_other_rows():
    objects = [{"id": "B1", "description": "bolt", "hs_code": "7318"},
               {"id": "B2", "description": "y" * 1_000_000, "hs_code": "7318"},
               {"id": "B3", "description": "nut", "hs_code": "7318"}]
    batch, report = import_file(json.dumps(objects), file_name="huge.json")
    assert report.items_created == 2
    assert [error.row_number for error in errors_of(batch)] == [2]


def test_it_rejects_a_nul_byte_in_a_text_field_by_row_and_keeps_the_other_rows():
    batch, report = import_file(HEADER + good_line(1) + good_line(2, "bolt\x00with a nul") + good_line(3),
                                file_name="nul.csv")
    assert report.items_created == 2
    assert [error.row_number for error in errors_of(batch)] == [2]


def test_it_fails_a_deeply_nested_json_file_with_a_reason_instead_of_crashing():
    batch, report = import_file("[" + "[" * 100_000 + "]" * 100_000 + "]", file_name="nested.json")
    assert batch.failure_reason or errors_of(batch)
    assert DeclarationItem.objects.filter(batch=batch).count() == 0


def test_it_stores_html_script_and_sql_payloads_as_plain_text():
    payloads = [
        "<script>alert(document.cookie)</script>",
        '"><img src=x onerror=alert(1)>',
        "'; DROP TABLE verifier_declarationitem; --",
        "Robert'); DELETE FROM auth_user WHERE ('1'='1",
    ]
    objects = [{"id": f"X{n}", "description": payload, "hs_code": "8471300000"} for n, payload in enumerate(payloads)]
    batch, report = import_file(json.dumps(objects), file_name="payloads.json")
    assert report.items_created == len(payloads)
    stored = sorted(DeclarationItem.objects.filter(batch=batch).values_list("description_raw", flat=True))
    assert stored == sorted(payloads)


def test_it_rejects_invalid_hs_codes_naming_the_code_and_keeps_the_valid_rows():
    rows = [good_line(1), "D2,1,bolt,84X1,1,1,USD\n", "D3,1,nut,123,1,1,USD\n", "D4,1,washer,73181600001234,1,1,USD\n",
            "D5,1,screw,7318.15.00,1,1,USD\n"]
    batch, report = import_file(HEADER + "".join(rows), file_name="codes.csv")
    assert report.items_created == 2  # D1 and D5 (dots are separators people write)
    errors = errors_of(batch)
    assert [error.row_number for error in errors] == [2, 3, 4]
    assert "'84X1'" in errors[0].reason and "HS code" in errors[0].reason
    assert DeclarationItem.objects.get(batch=batch, external_id="D5").declared_code == "73181500"


def test_it_imports_a_duplicated_declaration_item_once_and_counts_the_duplicate():
    batch, report = import_file(HEADER + good_line(1) + good_line(2) + good_line(1), file_name="dup.csv")
    assert report.items_created == 2
    assert report.duplicates == 1
    again, second = import_file(HEADER + good_line(1), file_name="dup-again.csv")
    assert second.items_created == 0 and second.duplicates == 1
    assert DeclarationItem.objects.filter(external_id="D1").count() == 1


def test_it_imports_a_100k_row_file_completely():
    rows = 100_000
    lines = [HEADER] + [f"H{number},1,item {number},7318150000,1,1,USD\n" for number in range(rows)]
    batch, report = import_file("".join(lines), file_name="large.csv")
    assert report.rows_read == rows
    assert report.items_created == rows
    assert DeclarationItem.objects.filter(batch=batch).count() == rows
