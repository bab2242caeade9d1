"""Reading declaration files: CSV, a JSON array or JSON Lines, in UTF-8 (with or without BOM) or GB18030.

Files are read as a stream, one row at a time, so memory stays bounded whatever the
file's size. Each row becomes either an `ItemRow` (the fields of a DeclarationItem)
or a `RowProblem` saying which row is wrong and why; a bad row never stops the rest.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO

# How much of the file is looked at to choose the encoding and the format.
SNIFF_BYTES = 256 * 1024
READ_CHUNK_CHARS = 64 * 1024

KNOWN_COLUMNS = (
    "id", "item_no", "product_name", "spec", "description", "hs_code", "origin",
    "quantity", "unit", "value", "currency", "language",
)
# Column length limits, from the model's fields.
MAX_LENGTHS = {"id": 64, "item_no": 16, "product_name": 500, "spec": 500, "origin": 8, "unit": 16, "language": 8}
MAX_DESCRIPTION_CHARS = 4000
HS_CODE_LENGTHS = (2, 4, 6, 8, 10)
# Quantities and values: non-negative, below 10^14, kept to the model's decimal places.
NUMBER_LIMIT = Decimal("1e14")
QUANTITY_EXPONENT = Decimal("0.0001")
VALUE_EXPONENT = Decimal("0.01")
# A CSV field may be this long before the csv module refuses it; longer text still fails the length checks
# below with a located reason, instead of stopping the whole file.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
# Separators people write inside codes ("8471.30.00", "8471 30 00", "8471-30").
HS_CODE_SEPARATORS = re.compile(r"[\s.\-]")


class UnreadableFile(ValueError):
    """The file as a whole cannot be read (encoding, format): nothing in it can be imported."""


@dataclass(frozen=True)
class ItemRow:
    row_number: int
    fields: dict  # DeclarationItem field values
    identity_key: str
    # What the row says (content_hash(fields)): a known key with another content is a new version.
    content_hash: str = ""


@dataclass(frozen=True)
class RowProblem:
    row_number: int
    reason: str
    raw: str = ""


@dataclass
class SniffResult:
    encoding: str
    format: str  # "csv", "json" or "jsonl"
    notes: list[str] = field(default_factory=list)


def sniff(head: bytes, *, file_name: str = "") -> SniffResult:
    """The encoding and format of a file from its first bytes (and its name's extension when it says)."""
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        try:
            # final=False: the sample may end in the middle of a multi-byte character.
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            encoding = "utf-8"
        except UnicodeDecodeError:
            try:
                codecs.getincrementaldecoder("gb18030")().decode(head, final=False)
                encoding = "gb18030"
            except UnicodeDecodeError as error:
                raise UnreadableFile(
                    f"the file is neither UTF-8 nor GB18030 (undecodable byte at offset {error.start})"
                ) from None
    name = file_name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        file_format = "jsonl"
    elif name.endswith(".json"):
        file_format = "json"
    elif name.endswith(".csv"):
        file_format = "csv"
    else:
        text = head.decode(encoding, errors="ignore").lstrip("\ufeff \t\r\n")
        file_format = "json" if text.startswith("[") else "jsonl" if text.startswith("{") else "csv"
    return SniffResult(encoding=encoding, format=file_format)


def read_declaration_rows(
    stream: IO[bytes], *, file_name: str = "", require_code: bool = False,
) -> Iterator[ItemRow | RowProblem]:
    """Every row of a declaration file, parsed and checked, in file order.

    `require_code`: reference files, whose rows must carry their (approved) hs_code.
    Raises UnreadableFile before the first row when the file cannot be read at all.
    """
    encoding = whole_file_encoding(stream)
    buffered = io.BufferedReader(stream, buffer_size=SNIFF_BYTES) if not hasattr(stream, "peek") else stream
    head = buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    if not head.strip():
        raise UnreadableFile("the file is empty")
    sniffed = sniff(head, file_name=file_name)
    if encoding and sniffed.encoding != "utf-8-sig":
        sniffed.encoding = encoding
    text = io.TextIOWrapper(buffered, encoding=sniffed.encoding, newline="")
    if sniffed.format == "csv":
        rows = _csv_rows(text, require_code=require_code)
    else:
        records = {"json": _json_array_records, "jsonl": _json_lines_records}[sniffed.format](text)
        rows = _parsed_records(records, require_code=require_code)
    try:
        yield from rows
    except UnicodeDecodeError as error:
        raise UnreadableFile(
            f"the file is not valid {sniffed.encoding} after its first rows (byte offset ~{error.start}); "
            "rows before that point were read"
        ) from None


def whole_file_encoding(stream: IO[bytes]) -> str | None:
    """For a seekable file: "utf-8" or "gb18030", checked over the whole file in chunks, then rewound.

    The first bytes can be plain ASCII in both encodings; a GB18030 byte deep in the file
    would otherwise stop the import halfway. None when the stream cannot be rewound.
    """
    if not (hasattr(stream, "seekable") and stream.seekable()):
        return None
    start = stream.tell()
    try:
        for encoding in ("utf-8", "gb18030"):
            decoder = codecs.getincrementaldecoder(encoding)()
            stream.seek(start)
            try:
                while chunk := stream.read(1024 * 1024):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
                return encoding
            except UnicodeDecodeError:
                continue
        return None
    finally:
        stream.seek(start)


def parse_record(record: dict, *, row_number: int, raw: str = "", require_code: bool = False) -> ItemRow | RowProblem:
    """Check one record (column -> value) and turn it into DeclarationItem fields."""
    def problem(reason: str) -> RowProblem:
        return RowProblem(row_number=row_number, reason=reason, raw=raw[:2000])

    values = {str(key).strip().lower(): value for key, value in record.items() if key is not None}
    if "description" not in values or values["description"] is None:
        return problem("description is missing")
    for key, value in values.items():
        if isinstance(value, str) and "\x00" in value or "\x00" in key:
            return problem(f"{key or 'a column'} contains a NUL byte")
    clean: dict[str, str] = {}
    for column in KNOWN_COLUMNS:
        value = values.get(column)
        if value is None:
            clean[column] = ""
        elif isinstance(value, (dict, list)):
            return problem(f"{column} must be a single value, not {type(value).__name__}")
        else:
            clean[column] = str(value).strip()
    for column, limit in MAX_LENGTHS.items():
        if len(clean[column]) > limit:
            return problem(f"{column} is {len(clean[column])} characters long; at most {limit} are allowed")
    if len(clean["description"]) > MAX_DESCRIPTION_CHARS:
        return problem(f"description is {len(clean['description'])} characters long; at most {MAX_DESCRIPTION_CHARS}")
    code = HS_CODE_SEPARATORS.sub("", clean["hs_code"])
    if code and (not code.isdigit() or len(code) not in HS_CODE_LENGTHS):
        return problem(f"hs_code {clean['hs_code']!r} is not an HS code (2, 4, 6, 8 or 10 digits)")
    if require_code and not code:
        return problem("hs_code is required in a reference file")
    if require_code and not clean["description"]:
        return problem("description is empty; a reference needs one")
    numbers: dict[str, Decimal | None] = {}
    for column in ("quantity", "value"):
        text = clean[column].replace(",", "")
        if not text:
            numbers[column] = None
            continue
        try:
            number = Decimal(text)
        except InvalidOperation:
            return problem(f"{column} {clean[column]!r} is not a number")
        if not number.is_finite() or number < 0 or number >= NUMBER_LIMIT:
            return problem(f"{column} {clean[column]!r} must be a non-negative number below 10^14")
        numbers[column] = number.quantize(QUANTITY_EXPONENT if column == "quantity" else VALUE_EXPONENT)
    currency = clean["currency"].upper()
    if currency and not (len(currency) == 3 and currency.isalpha()):
        return problem(f"currency {clean['currency']!r} is not a three-letter code")
    if clean["item_no"] and not clean["id"]:
        return problem("item_no is given without the declaration id it belongs to")
    fields = {
        "external_id": clean["id"],
        "item_no": clean["item_no"],
        "product_name": clean["product_name"],
        "spec": clean["spec"],
        "description_raw": clean["description"],
        "declared_code": code,
        "origin": clean["origin"].upper(),
        "quantity": numbers["quantity"],
        "unit": clean["unit"],
        "value": numbers["value"],
        "currency": currency,
        "language": clean["language"].lower(),
        "extra": {key: value for key, value in values.items() if key not in KNOWN_COLUMNS and key != ""},
    }
    return ItemRow(row_number=row_number, fields=fields, identity_key=identity_key(fields),
                   content_hash=content_hash(fields))


# The fields that make an item's content: an item without an id is known by them, and a known id
# submitted with any of them changed is a new version of its item.
CONTENT_FIELDS = (
    "description_raw", "product_name", "spec", "declared_code", "origin", "quantity", "unit", "value", "currency",
)


def identity_key(fields: dict) -> str:
    """The key that recognises an item imported again: its declaration id and item number, else its content.

    Scoped to the submitting account where it is stored (DeclarationItem.submitter), not here.
    """
    external_id = fields["external_id"]
    return _identity_key(external_id, fields["item_no"], "" if external_id else _content_text(fields))


def content_hash(fields: dict) -> str:
    """sha256 hex of what an item says (CONTENT_FIELDS): equal for an identical re-submission."""
    return _sha256_hex(_content_text(fields))


def _content_text(fields: dict) -> str:
    return "\x1f".join(str(fields[name] if fields.get(name) is not None else "") for name in CONTENT_FIELDS)


def _identity_key(external_id: str, item_no: str, content: str) -> str:
    if external_id:
        return _sha256_hex(f"id\x1f{external_id}\x1f{item_no}")
    return _sha256_hex("content\x1f" + content)


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- formats: CSV yields checked rows; the JSON formats yield (row_number, record dict | RowProblem, raw text) ---


def _parsed_records(
    records: Iterator[tuple[int, dict | RowProblem, str]], *, require_code: bool,
) -> Iterator[ItemRow | RowProblem]:
    for row_number, record, raw in records:
        if isinstance(record, RowProblem):
            yield record
        else:
            yield parse_record(record, row_number=row_number, raw=raw, require_code=require_code)


def _csv_rows(text: IO[str], *, require_code: bool) -> Iterator[ItemRow | RowProblem]:
    """The rows of a CSV file, checked. A row that passes every check is built by the header's quick parser;
    any other row (blank, ragged, or failing a check) goes through parse_record, which says what is wrong."""
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise UnreadableFile(f"the CSV header cannot be read: {error}") from None
    header = [name.strip().lower().lstrip("\ufeff") for name in header]
    if "description" not in header:
        raise UnreadableFile(f"the CSV header has no 'description' column (columns: {', '.join(header)})")
    quick = _quick_csv_parser(header, require_code=require_code)
    width = len(header)
    row_number = 0
    while True:
        row_number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield RowProblem(row_number, f"the CSV row cannot be read: {error}")
            continue
        if quick is not None and len(cells) == width:
            item = quick(cells, row_number)
            if item is not None:
                yield item
                continue
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are not rows
        raw = ",".join(cells)
        if len(cells) != width:
            yield RowProblem(row_number, f"expected {width} columns, found {len(cells)}", raw[:2000])
            continue
        yield parse_record(dict(zip(header, cells)), row_number=row_number, raw=raw, require_code=require_code)


def _quick_csv_parser(header: list[str], *, require_code: bool) -> Callable[[list[str], int], ItemRow | None] | None:
    """parse_record for the rows of one CSV header, for rows that pass every check; None for any other row.

    The same checks and the same fields as parse_record, on a list of cells instead of a dict, with no
    error messages to build: most rows of a file are good, and this is where an import spends its time.
    None when the header itself is unusual (a repeated or NUL-bearing column name): parse_record reads it.
    """
    if len(set(header)) != len(header) or any("\x00" in name for name in header):
        return None
    missing = len(header)  # the index of an empty cell appended to each row, for the known columns it lacks
    pick_known = operator.itemgetter(*(header.index(column) if column in header else missing
                                       for column in KNOWN_COLUMNS))
    extra_positions = [(name, position) for position, name in enumerate(header)
                       if name not in KNOWN_COLUMNS and name != ""]
    limits = tuple(MAX_LENGTHS[column] for column in ("id", "item_no", "product_name", "spec", "origin", "unit",
                                                      "language"))
    id_limit, item_no_limit, product_name_limit, spec_limit, origin_limit, unit_limit, language_limit = limits
    separators = HS_CODE_SEPARATORS.sub

    def parse(cells: list[str], row_number: int) -> ItemRow | None:
        stripped = list(map(str.strip, cells))
        if not any(stripped) or "\x00" in "".join(cells):
            return None
        stripped.append("")
        (external_id, item_no, product_name, spec, description, given_code, origin, quantity_text, unit, value_text,
         given_currency, language) = pick_known(stripped)
        if (len(external_id) > id_limit or len(item_no) > item_no_limit or len(product_name) > product_name_limit
                or len(spec) > spec_limit or len(origin) > origin_limit or len(unit) > unit_limit
                or len(language) > language_limit or len(description) > MAX_DESCRIPTION_CHARS
                or (item_no and not external_id)):
            return None
        code = given_code if given_code.isdigit() else separators("", given_code)
        if code and (not code.isdigit() or len(code) not in HS_CODE_LENGTHS):
            return None
        if require_code and not (code and description):
            return None
        quantity = _quick_number(quantity_text, QUANTITY_EXPONENT)
        value = _quick_number(value_text, VALUE_EXPONENT)
        if quantity is _NOT_A_NUMBER or value is _NOT_A_NUMBER:
            return None
        currency = given_currency.upper()
        if currency and not (len(currency) == 3 and currency.isalpha()):
            return None
        origin = origin.upper()
        fields = {
            "external_id": external_id, "item_no": item_no, "product_name": product_name, "spec": spec,
            "description_raw": description, "declared_code": code, "origin": origin, "quantity": quantity,
            "unit": unit, "value": value, "currency": currency, "language": language.lower(),
            "extra": {name: cells[position] for name, position in extra_positions},
        }
        content = _content_text(fields)  # the same text content_hash and identity_key hash
        return ItemRow(row_number=row_number, fields=fields, identity_key=_identity_key(external_id, item_no, content),
                       content_hash=_sha256_hex(content))

    return parse


# What _quick_number returns for text that parse_record would reject.
_NOT_A_NUMBER = object()


def _quick_number(text: str, exponent: Decimal) -> Decimal | None | object:
    """parse_record's reading of quantity and value: None when empty, _NOT_A_NUMBER when it would be rejected."""
    if "," in text:
        text = text.replace(",", "")
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return _NOT_A_NUMBER
    if not number.is_finite() or number < 0 or number >= NUMBER_LIMIT:
        return _NOT_A_NUMBER
    return number.quantize(exponent)


def _json_lines_records(text: IO[str]) -> Iterator[tuple[int, dict | RowProblem, str]]:
    for row_number, line in enumerate(text, start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            reason = f"not valid JSON: {error.msg} at column {error.colno}"
            yield row_number, RowProblem(row_number, reason, line[:2000]), line
            continue
        except RecursionError:
            yield row_number, RowProblem(row_number, "not valid JSON: nested too deeply", line[:2000]), line
            continue
        if not isinstance(record, dict):
            reason = f"expected a JSON object, found {type(record).__name__}"
            yield row_number, RowProblem(row_number, reason, line[:2000]), line
            continue
        yield row_number, record, line


def _json_array_records(text: IO[str]) -> Iterator[tuple[int, dict | RowProblem, str]]:
    """Objects of a top-level JSON array, decoded one at a time from a sliding buffer."""
    decoder = json.JSONDecoder()
    buffer, position, exhausted = "", 0, False

    def fill() -> bool:
        nonlocal buffer, position, exhausted
        chunk = text.read(READ_CHUNK_CHARS)
        if not chunk:
            exhausted = True
            return False
        buffer, position = buffer[position:] + chunk, 0
        return True

    def skip_blanks() -> None:
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n\ufeff":
                position += 1
            if position < len(buffer) or not fill():
                return

    skip_blanks()
    if position >= len(buffer) or buffer[position] != "[":
        raise UnreadableFile("a JSON file must hold one array of objects")
    position += 1
    row_number = 0
    while True:
        skip_blanks()
        if position >= len(buffer):
            yield row_number + 1, RowProblem(row_number + 1, f"the JSON array ends early, after {row_number} items"), ""
            return
        if buffer[position] == "]":
            return
        if row_number and buffer[position] == ",":
            position += 1
            skip_blanks()
        row_number += 1
        while True:
            try:
                record, end = decoder.raw_decode(buffer, position)
                break
            except json.JSONDecodeError as error:
                if not exhausted and fill():
                    continue
                # Nothing after a broken item can be located: report it, keep the items before it.
                reason = f"item {row_number} of the JSON array is cut off or not valid JSON ({error.msg}); " \
                         "nothing after it was read"
                yield row_number, RowProblem(row_number, reason, buffer[position:position + 2000]), ""
                return
            except RecursionError:
                yield row_number, RowProblem(row_number, f"item {row_number} of the JSON array is nested too deeply; "
                                                         "nothing after it was read"), ""
                return
        raw = buffer[position:end]
        position = end
        if not isinstance(record, dict):
            reason = f"expected a JSON object, found {type(record).__name__}"
            yield row_number, RowProblem(row_number, reason, raw[:2000]), raw
        else:
            yield row_number, record, raw


def records_from_objects(objects: Iterable[dict]) -> Iterator[ItemRow | RowProblem]:
    """Items given as already-parsed objects (the JSON API), checked like file rows."""
    for row_number, record in enumerate(objects, start=1):
        if not isinstance(record, dict):
            yield RowProblem(row_number, f"expected an object, found {type(record).__name__}", str(record)[:2000])
        else:
            yield parse_record(record, row_number=row_number, raw=json.dumps(record, ensure_ascii=False, default=str))
