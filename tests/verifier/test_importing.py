from __future__ import annotations

import codecs
import io
import json
import tracemalloc

import pytest

from verifier.importing import ItemRow, RowProblem, read_declaration_rows
from verifier.models import DeclarationBatch, DeclarationItem, ImportRowError
from verifier.services import create_batch, import_declaration_file

from .factories import csv_bytes

pytestmark = pytest.mark.django_db

ROWS = [
    {"id": "D-1", "item_no": "1", "description": "无线蓝牙耳机", "hs_code": "8517.62", "quantity": "10",
     "value": "99.5", "currency": "usd", "origin": "cn", "language": "zh"},
    {"id": "D-1", "item_no": "2", "description": "Bluetooth earphone without cable", "hs_code": "851762",
     "language": "en"},
]


def import_bytes(data: io.BytesIO, *, file_name: str, **batch_fields):
    batch = create_batch(source=DeclarationBatch.Source.FILE, file_name=file_name, **batch_fields)
    return batch, import_declaration_file(batch=batch, stream=data, file_name=file_name)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_it_reads_csv_in_each_supported_encoding(encoding):
    batch, report = import_bytes(csv_bytes(ROWS, encoding=encoding), file_name="items.csv")

    assert report.items_created == 2 and report.rows_rejected == 0
    item = DeclarationItem.objects.get(batch=batch, item_no="1")
    assert item.description_raw == "无线蓝牙耳机"
    assert item.declared_code == "851762"
    assert item.currency == "USD" and item.origin == "CN"
    assert str(item.value) == "99.50"


def test_it_reads_a_json_array_and_json_lines_with_the_same_result():
    array = io.BytesIO(json.dumps(ROWS, ensure_ascii=False).encode("utf-8"))
    lines = io.BytesIO("\n".join(json.dumps(row, ensure_ascii=False) for row in ROWS).encode("gb18030"))

    rows_from_array = list(read_declaration_rows(array, file_name="items.json"))
    rows_from_lines = list(read_declaration_rows(lines, file_name="items.jsonl"))

    assert [row.fields for row in rows_from_array] == [row.fields for row in rows_from_lines]
    assert rows_from_array[1].fields["description_raw"] == "Bluetooth earphone without cable"


def test_it_reports_every_bad_row_with_its_number_and_reason_and_keeps_the_good_rows():
    rows = [
        {"description": "cotton t-shirts", "hs_code": "610910", "quantity": "5"},
        {"description": "steel screws", "hs_code": "73X8", "quantity": "1"},
        {"description": "rubber gloves", "hs_code": "401511", "quantity": "many"},
        {"description": "leather handbag", "hs_code": "420221", "quantity": "2"},
    ]
    batch, report = import_bytes(csv_bytes(rows), file_name="items.csv")

    assert (report.rows_read, report.items_created, report.rows_rejected) == (4, 2, 2)
    errors = list(ImportRowError.objects.filter(batch=batch).order_by("row_number").values_list("row_number", "reason"))
    assert errors[0][0] == 2 and "hs_code '73X8'" in errors[0][1]
    assert errors[1][0] == 3 and "quantity 'many' is not a number" in errors[1][1]
    assert set(DeclarationItem.objects.filter(batch=batch).values_list("description_raw", flat=True)) == {
        "cotton t-shirts", "leather handbag"}


def test_it_locates_a_broken_json_line_and_a_ragged_csv_row():
    lines = io.BytesIO(b'{"description": "tea"}\n{"description": \n{"description": "coffee"}\n')
    csv_data = io.BytesIO(b"description,hs_code\ntea,0902\ncoffee,0901,extra\n")

    json_rows = list(read_declaration_rows(lines, file_name="x.jsonl"))
    csv_rows = list(read_declaration_rows(csv_data, file_name="x.csv"))

    assert [type(row) for row in json_rows] == [ItemRow, RowProblem, ItemRow]
    assert json_rows[1].row_number == 2 and "not valid JSON" in json_rows[1].reason
    assert isinstance(csv_rows[1], RowProblem) and csv_rows[1].row_number == 2
    assert "expected 2 columns, found 3" in csv_rows[1].reason


def test_it_does_not_duplicate_items_imported_again_with_or_without_ids():
    rows = ROWS + [{"description": "green tea, 500 g bags", "hs_code": "090210"}]
    import_bytes(csv_bytes(rows), file_name="first.csv")
    second_batch, report = import_bytes(csv_bytes(rows), file_name="again.csv")

    assert report.items_created == 0 and report.duplicates == 3
    assert DeclarationItem.objects.count() == 3
    assert not DeclarationItem.objects.filter(batch=second_batch).exists()


def test_it_keeps_unknown_columns_in_extra():
    rows = [{"description": "copper wire", "hs_code": "7408", "Importer Ref": "PO-77", "port": "Ningbo"}]
    batch, _ = import_bytes(csv_bytes(rows), file_name="items.csv")

    assert DeclarationItem.objects.get(batch=batch).extra == {"importer ref": "PO-77", "port": "Ningbo"}


def test_it_fails_the_batch_with_a_reason_when_the_file_has_no_description_column():
    batch, report = import_bytes(io.BytesIO(b"name,hs_code\ntea,0902\n"), file_name="items.csv")

    batch.refresh_from_db()
    assert batch.status == DeclarationBatch.Status.FAILED
    assert "no 'description' column" in report.failure_reason
    assert not DeclarationItem.objects.exists()


def test_it_fails_cleanly_on_bytes_that_are_neither_utf8_nor_gb18030():
    batch, report = import_bytes(io.BytesIO(b"description\n\xff\xfe\xfd\x80\x80\n"), file_name="items.csv")

    assert "neither UTF-8 nor GB18030" in report.failure_reason


def test_it_streams_a_json_array_in_bounded_memory():
    # tracemalloc slows parsing tenfold: 10,000 rows are enough to tell streaming from loading.
    rows = 10_000

    def generate():
        yield b"["
        for number in range(rows):
            prefix = b"," if number else b""
            yield prefix + json.dumps({"id": f"D{number}", "description": f"item {number} cotton shirt",
                                       "hs_code": "610910"}).encode()
        yield b"]"

    class Stream(io.RawIOBase):
        def __init__(self):
            self.parts, self.pending = generate(), b""

        def readable(self):
            return True

        def readinto(self, buffer):
            while len(self.pending) < len(buffer):
                try:
                    self.pending += next(self.parts)
                except StopIteration:
                    break
            size = min(len(buffer), len(self.pending))
            buffer[:size], self.pending = self.pending[:size], self.pending[size:]
            return size

    tracemalloc.start()
    count = sum(1 for row in read_declaration_rows(Stream(), file_name="big.json") if isinstance(row, ItemRow))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert count == rows
    assert peak < 3 * 2**20  # the file is ~0.7 MB of JSON and ~15 MB as parsed rows held at once


def test_it_reads_a_bom_file_whose_header_carries_the_bom():
    data = io.BytesIO(codecs.BOM_UTF8 + "description,hs_code\n绿茶,0902\n".encode())

    rows = list(read_declaration_rows(data, file_name="items.csv"))

    assert rows[0].fields["description_raw"] == "绿茶" and rows[0].fields["declared_code"] == "0902"


def test_it_reads_a_gb18030_file_whose_first_rows_are_plain_ascii():
    ascii_rows = "".join(f"row {number} steel screws,7318\n" for number in range(20_000)).encode("ascii")
    data = io.BytesIO(b"description,hs_code\n" + ascii_rows + "绿茶,0902\n".encode("gb18030"))

    rows = list(read_declaration_rows(data, file_name="items.csv"))

    assert len(rows) == 20_001 and rows[-1].fields["description_raw"] == "绿茶"


# --- identity per submitter, versions, true counts (issue 13) ----------------------------------


def test_another_submitters_identical_id_is_their_own_item(django_user_model):
    first = django_user_model.objects.create_user(username="broker-a", password="x" * 12)
    second = django_user_model.objects.create_user(username="broker-b", password="x" * 12)
    rows = [{"id": "D-1", "item_no": "1", "description": "green tea, 500 g bags", "hs_code": "090210"}]

    _, mine = import_bytes(csv_bytes(rows), file_name="a.csv", created_by=first)
    other_batch, theirs = import_bytes(csv_bytes(rows), file_name="b.csv", created_by=second)

    assert (mine.items_created, theirs.items_created, theirs.duplicates) == (1, 1, 0)
    assert DeclarationItem.objects.get(batch=other_batch).submitter == second


def test_a_changed_resubmission_is_a_new_version_judged_again_and_an_identical_one_is_a_no_op(
    django_user_model, knowledge_base,
):
    from verifier.models import Verdict
    from verifier.pipeline import process_pending

    broker = django_user_model.objects.create_user(username="broker", password="x" * 12)
    original = [{"id": "D-9", "item_no": "1", "description": knowledge_base["090210"], "hs_code": "090210"}]
    corrected = [{**original[0], "hs_code": "420221"}]
    import_bytes(csv_bytes(original), file_name="first.csv", created_by=broker)
    process_pending()

    _, same_again = import_bytes(csv_bytes(original), file_name="same.csv", created_by=broker)
    assert (same_again.items_created, same_again.duplicates) == (0, 1)

    _, correction = import_bytes(csv_bytes(corrected), file_name="corrected.csv", created_by=broker)
    assert (correction.items_created, correction.duplicates) == (1, 0)
    process_pending()

    versions = list(DeclarationItem.objects.filter(external_id="D-9").order_by("version"))
    assert [(item.version, item.declared_code, item.status) for item in versions] == [
        (1, "090210", DeclarationItem.Status.VERIFIED), (2, "420221", DeclarationItem.Status.VERIFIED)]
    # The first verdict is kept as the item's history; the correction has its own.
    assert Verdict.objects.get(item=versions[0]).final_code == "090210"
    assert Verdict.objects.get(item=versions[1]).tier == Verdict.Tier.WARNING

    _, back_to_first = import_bytes(csv_bytes(corrected), file_name="corrected-again.csv", created_by=broker)
    assert back_to_first.items_created == 0


def test_a_rerun_of_an_interrupted_import_counts_the_items_its_first_run_wrote(monkeypatch):
    from verifier import services

    rows = [{"id": f"R-{number}", "item_no": "1", "description": f"cotton towel {number}"} for number in range(10)]
    batch = create_batch(source=DeclarationBatch.Source.FILE, file_name="big.csv")
    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 4)
    real_create_items = services._create_items
    calls = []

    def dies_after_two_chunks(**arguments):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("worker lost")
        return real_create_items(**arguments)

    monkeypatch.setattr(services, "_create_items", dies_after_two_chunks)
    with pytest.raises(ConnectionError):
        import_declaration_file(batch=batch, stream=csv_bytes(rows), file_name="big.csv")
    monkeypatch.setattr(services, "_create_items", real_create_items)

    report = import_declaration_file(batch=batch, stream=csv_bytes(rows), file_name="big.csv")

    assert (report.rows_read, report.items_created, report.duplicates) == (10, 10, 0)
    batch.refresh_from_db()
    assert (batch.items_created, batch.duplicates, batch.status) == (10, 0, DeclarationBatch.Status.PROCESSING)


# --- the bulk path: quick CSV rows, COPY through a staging table, reading ahead (issue 16) -------------------


def test_it_reads_every_csv_row_as_parse_record_reads_it():
    import csv

    from verifier.importing import parse_record

    header = ["ID", "item_no", " Description ", "hs_code", "quantity", "value", "currency", "origin", "language",
              "unit", "spec", "product_name", "Port"]
    rows = [
        ["D-1", "1", " cotton shirt ", "6109.10", "1,200", "99.999", "usd", "cn", "ZH", "PCS", "S", "shirt", " Ningbo"],
        ["D-1", "2", "bolts", "7318 15", "1e3", "0", "EUR", "de", "en", "KG", "", "", ""],
        ["", "", "green tea", "", "", "", "", "", "", "", "", "", ""],
        ["D-2", "1", "tea", "84X1", "1", "1", "USD", "", "", "", "", "", ""],
        ["", "3", "item without id", "0902", "", "", "", "", "", "", "", "", ""],
        ["D-3", "1", "tea", "0902", "-1", "", "", "", "", "", "", "", ""],
        ["D-3", "2", "tea", "0902", "NaN", "", "", "", "", "", "", "", ""],
        ["D-3", "3", "tea", "0902", "", "1e14", "", "", "", "", "", "", ""],
        ["D-3", "4", "tea", "0902", "", "", "US", "", "", "", "", "", ""],
        ["D-3", "5", "tea\x00", "0902", "", "", "", "", "", "", "", "", ""],
        ["D-3", "6", "x" * 4001, "0902", "", "", "", "", "", "", "", "", ""],
        ["D" * 65, "1", "tea", "0902", "", "", "", "", "", "", "", "", ""],
        ["D-3", "7", "tea", "0902", ",", "1_000", "", "ABCDEFGHI", "", "", "", "", ""],
        ["", "", "", "", "", "", "", "", "", "", "", "", ""],
        ["D-4", "1", "", "", "", "", "", "", "", "", "", "", ""],
    ]
    text = io.StringIO()
    csv.writer(text).writerows([header] + rows)
    data = io.BytesIO(text.getvalue().encode("utf-8"))

    read = list(read_declaration_rows(data, file_name="items.csv"))

    names = [name.strip().lower() for name in header]
    expected = [parse_record(dict(zip(names, cells)), row_number=number, raw=",".join(cells))
                for number, cells in enumerate(rows, start=1) if any(cell.strip() for cell in cells)]
    assert read == expected
    assert sum(isinstance(row, ItemRow) for row in read) == 4


def test_it_reports_every_bad_row_stores_each_good_row_once_across_chunks_and_a_reimport_adds_nothing(monkeypatch):
    from verifier import services

    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 3)
    rows = [{"id": f"C-{number}", "item_no": "1", "description": f"cotton towel {number}",
             "hs_code": "63X2" if number % 4 == 0 else "630260"} for number in range(1, 15)]
    rows[9] = {**rows[1]}  # row 10 repeats row 2 (another chunk): a duplicate
    rows[10] = {**rows[2], "description": "cotton towel 3, corrected"}  # row 11 changes row 3: its version 2
    batch, report = import_bytes(csv_bytes(rows), file_name="chunks.csv")

    assert (report.rows_read, report.rows_rejected, report.items_created, report.duplicates) == (14, 3, 10, 1)
    assert list(ImportRowError.objects.filter(batch=batch).order_by("row_number").values_list(
        "row_number", flat=True)) == [4, 8, 12]
    items = list(DeclarationItem.objects.filter(batch=batch).order_by("id"))
    assert [(item.external_id, item.version) for item in items] == [
        ("C-1", 1), ("C-2", 1), ("C-3", 1), ("C-5", 1), ("C-6", 1), ("C-7", 1), ("C-9", 1), ("C-3", 2),
        ("C-13", 1), ("C-14", 1)]
    assert items[-3].description_raw == "cotton towel 3, corrected" and items[0].extra == {}

    # The same file again, less row 3 (its original text would now be a third version): nothing new.
    _, again = import_bytes(csv_bytes(rows[:2] + rows[3:]), file_name="again.csv")
    assert (again.items_created, again.duplicates, again.rows_rejected) == (0, 10, 3)
    assert DeclarationItem.objects.count() == 10


def test_it_keeps_the_rows_read_before_a_stream_turns_unreadable():
    from verifier import services

    good = "".join(f"U-{number},1,cotton towel {number}\n" for number in range(20_000)).encode()

    class Stream(io.RawIOBase):  # not seekable: the encoding is sniffed from the first bytes only
        def __init__(self):
            self.data = io.BytesIO(b"id,item_no,description\n" + good + b"U-x,1,\xff\xfe broken\n")

        def readable(self):
            return True

        def readinto(self, buffer):
            return self.data.readinto(buffer)

    batch = create_batch(source=DeclarationBatch.Source.FILE, file_name="cut.csv")
    report = services.import_declaration_file(batch=batch, stream=Stream(), file_name="cut.csv")

    assert "not valid utf-8 after its first rows" in report.failure_reason
    assert DeclarationItem.objects.filter(batch=batch).count() >= services.IMPORT_CHUNK_ROWS


def test_it_leaves_no_reading_thread_behind_when_writing_fails(monkeypatch):
    import threading

    from verifier import services

    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 2)

    def database_lost(**arguments):
        raise ConnectionError("database lost")

    monkeypatch.setattr(services, "_create_items", database_lost)
    rows = [{"id": f"T-{number}", "item_no": "1", "description": f"cotton towel {number}"} for number in range(50)]
    with pytest.raises(ConnectionError):
        import_bytes(csv_bytes(rows), file_name="items.csv")

    assert not [thread for thread in threading.enumerate() if thread.name == "import-read-ahead"]


def test_it_stores_tabs_newlines_and_backslashes_in_values_exactly():
    objects = [{"id": "E-1", "item_no": "1", "description": "cable\tgland\\n 10mm\nline two\r\nend \\N",
                "spec": "C:\\parts\\x", "hs_code": "8547", "Note": "a\\tb\tc"}]
    lines = io.BytesIO("\n".join(json.dumps(item) for item in objects).encode())
    batch, report = import_bytes(lines, file_name="items.jsonl")

    item = DeclarationItem.objects.get(batch=batch)
    assert report.items_created == 1
    assert item.description_raw == "cable\tgland\\n 10mm\nline two\r\nend \\N"
    assert item.spec == "C:\\parts\\x" and item.extra == {"note": "a\\tb\tc"}
