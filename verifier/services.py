"""Writes of the verification domain: importing declarations, reviews, growing the knowledge base."""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import queue
import tempfile
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from common.locks import advisory_lock, lock_is_free
from common.queueing import queue_on_commit, send_task

from .importing import ItemRow, RowProblem, UnreadableFile, read_declaration_rows, records_from_objects
from .models import (
    DeclarationBatch,
    DeclarationItem,
    ImportRowError,
    KnowledgeEntry,
    Review,
    RoutingThreshold,
    UploadedFileChunk,
    Verdict,
)
from .normalization import item_text, normalize_description
from .selectors import glossary_mapping

# Rows written per COPY and INSERT (one transaction): big enough to amortise the round trips and the commit,
# small enough to bound memory (three chunks at most are held: one written, one waiting, one being read).
# A key repeated within one chunk keeps its first row; across chunks a changed row is a new version.
IMPORT_CHUNK_ROWS = 2000
# Knowledge entries embedded per call to the embedding service.
INDEX_CHUNK_ENTRIES = 512


@dataclass(frozen=True)
class ImportReport:
    batch_id: int
    rows_read: int
    items_created: int
    duplicates: int
    rows_rejected: int
    failure_reason: str = ""


def create_batch(
    *, source: str, mode: str = DeclarationBatch.Mode.CHECK, file_name: str = "", is_reference: bool = False,
    created_by: AbstractBaseUser | None = None,
) -> DeclarationBatch:
    if mode not in DeclarationBatch.Mode.values:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(DeclarationBatch.Mode.values)}")
    return DeclarationBatch.objects.create(
        source=source, mode=mode, file_name=file_name[:255], is_reference=is_reference,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )


def import_declaration_file(*, batch: DeclarationBatch, stream: IO[bytes], file_name: str = "") -> ImportReport:
    """Import a declaration file into `batch`; bad rows are recorded, good rows kept; processing is queued.

    A file that cannot be read at all marks the batch failed with the reason.
    """
    try:
        rows = read_declaration_rows(stream, file_name=file_name or batch.file_name, require_code=batch.is_reference)
        return import_rows(batch=batch, rows=rows)
    except UnreadableFile as error:
        return _fail_batch(batch=batch, reason=str(error))


def import_declaration_objects(*, batch: DeclarationBatch, objects: Iterable[dict]) -> ImportReport:
    """Import items given as JSON objects (the API), like the rows of a file."""
    return import_rows(batch=batch, rows=records_from_objects(objects))


def import_rows(*, batch: DeclarationBatch, rows: Iterator[ItemRow | RowProblem]) -> ImportReport:
    """Write parsed rows in chunks: items (or reference knowledge) with ON CONFLICT DO NOTHING, and row errors.

    Each chunk commits on its own, so a crash mid-file keeps what was imported and a re-run
    does not duplicate it (identity keys are unique per submitter and version). The counts are
    taken from what the batch holds at the end, not from what this run inserted: a re-run after
    an interrupted one reports every item of the batch as created, none of its own as duplicates.
    """
    rows_read = rejected = 0
    reference_ids: list[int] = []
    # Inside a caller's transaction the chunks commit with it, and its commit must wait for the disk.
    chunks_commit_on_their_own = not connection.in_atomic_block
    for chunk in _read_ahead(_prepared_chunks(rows, size=IMPORT_CHUNK_ROWS, stage=not batch.is_reference)):
        rows_read += chunk.rows_read
        rejected += len(chunk.bad)
        with transaction.atomic():
            if chunks_commit_on_their_own:
                _commit_without_waiting_for_disk()
            _create_row_errors(batch=batch, rows=chunk.bad)
            if batch.is_reference:
                reference_ids += _create_reference_entries(chunk.good, since=batch.created_at)
            else:
                _create_items(batch=batch, rows=chunk.good, staged=chunk.staged)
    # A key in two chunks of one file is one entry, found by both chunks.
    reference_ids = list(dict.fromkeys(reference_ids))
    created = len(reference_ids) if batch.is_reference else DeclarationItem.objects.filter(batch=batch).count()
    duplicates = rows_read - rejected - created
    with transaction.atomic():
        DeclarationBatch.objects.filter(pk=batch.pk).update(
            rows_read=rows_read, items_created=created, duplicates=duplicates, rows_rejected=rejected,
            status=DeclarationBatch.Status.DONE if batch.is_reference or created == 0
            else DeclarationBatch.Status.PROCESSING,
        )
        if batch.is_reference:
            queue_knowledge_indexing(entry_ids=reference_ids)
        elif created:
            queue_verification(items=created)
    batch.refresh_from_db()
    return ImportReport(batch.pk, rows_read, created, duplicates, rejected)


@dataclass(frozen=True)
class _Chunk:
    rows_read: int
    good: list[ItemRow]
    bad: list[RowProblem]
    staged: _StagedRows | None  # the good rows as the staging table's COPY text (items, not reference batches)


@dataclass(frozen=True)
class _StagedRows:
    copy_text: bytes  # UTF-8, the connection's encoding
    count: int


def _prepared_chunks(rows: Iterator[ItemRow | RowProblem], *, size: int, stage: bool) -> Iterator[_Chunk]:
    """Rows in chunks, each ready to write: split into good and bad, the good ones formatted for COPY."""
    for rows_chunk in _chunks(rows, size):
        good = [row for row in rows_chunk if isinstance(row, ItemRow)]
        bad = [row for row in rows_chunk if isinstance(row, RowProblem)]
        yield _Chunk(len(rows_chunk), good, bad, _staged_rows(good) if stage and good else None)


def _staged_rows(rows: Sequence[ItemRow]) -> _StagedRows:
    """COPY text (STAGING_COLUMNS) of the first row of each identity key: a key repeated in a chunk keeps its first."""
    first_rows: dict[str, ItemRow] = {}
    for row in rows:
        first_rows.setdefault(row.identity_key, row)
    lines = []
    for row in first_rows.values():
        fields = row.fields
        quantity, value, extra = fields["quantity"], fields["value"], fields["extra"]
        texts = (
            row.identity_key, row.content_hash, fields["external_id"], fields["item_no"], fields["product_name"],
            fields["spec"], fields["description_raw"], fields["declared_code"], fields["origin"], fields["unit"],
            fields["currency"], fields["language"], json.dumps(extra, ensure_ascii=False) if extra else "{}",
        )
        line = "\t".join(texts)
        if "\\" in line or "\n" in line or "\r" in line or line.count("\t") != len(texts) - 1:
            line = "\t".join(text.translate(_COPY_TEXT_ESCAPES) for text in texts)
        lines.append(f"{row.row_number}\t{_COPY_NULL if quantity is None else quantity}\t"
                     f"{_COPY_NULL if value is None else value}\t{line}\n")
    return _StagedRows("".join(lines).encode(), len(first_rows))


# COPY's text format: a backslash, a tab, a newline or a carriage return inside a value is escaped; \N is NULL.
_COPY_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


def _create_items(*, batch: DeclarationBatch, rows: Sequence[ItemRow], staged: _StagedRows | None = None) -> None:
    """Insert new items and new versions of known ones (the batch's items are counted afterwards).

    Identity is per submitter (the batch's creator): a key that account has not used is version 1;
    a key whose latest version says something else (content_hash) gets the next version, judged
    again while the earlier ones keep their verdicts; an identical re-submission inserts nothing.

    1. COPY the chunk into a temporary staging table (a key repeated inside the chunk: its first row).
    2. Insert every staged row as version 1; the unique index on (submitter, key, version) turns away
       the keys this submitter already has.
    3. Only when some were turned away: find each key's latest version and insert the rows whose content changed.
    """
    if not rows:
        return
    staged = staged or _staged_rows(rows)
    parameters = {"batch": batch.pk, "submitter": batch.created_by_id, "pending": DeclarationItem.Status.PENDING,
                  "now": timezone.now()}
    names = {"items": DeclarationItem._meta.db_table, "staging": STAGING_TABLE,
             "submitter": "IS NULL" if batch.created_by_id is None else "= %(submitter)s"}
    # One transaction (the caller's, usually): the staging table's rows live until its commit.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        _prepare_staging_table(cursor)
        with cursor.cursor.copy(f"COPY {STAGING_TABLE} ({', '.join(STAGING_COLUMNS)}) FROM STDIN") as copy:
            copy.write(staged.copy_text)
        cursor.execute(_INSERT_FIRST_VERSIONS.format(**names), parameters)
        if cursor.rowcount < staged.count:
            # Every staged row again: those just inserted find themselves as their latest version and are skipped.
            # ON CONFLICT DO NOTHING: another import of the same key and version at the same moment won.
            cursor.execute(_INSERT_NEXT_VERSIONS.format(**names), parameters)
        if connection.savepoint_ids:
            # The chunk ends in a savepoint, not a commit (an import inside a transaction): empty it for the next.
            cursor.execute(f"DELETE FROM {STAGING_TABLE}")


# Where one chunk of an import waits between COPY and INSERT: private to the connection, emptied at each commit.
STAGING_TABLE = "verifier_import_staging"
STAGING_COLUMNS = (
    "row_number", "quantity", "value", "identity_key", "content_hash", "external_id", "item_no", "product_name", "spec",
    "description_raw", "declared_code", "origin", "unit", "currency", "language", "extra",
)
_CREATE_STAGING_TABLE = f"""
    CREATE TEMPORARY TABLE {STAGING_TABLE} (
        row_number integer, identity_key text, content_hash text, external_id text, item_no text, product_name text,
        spec text, description_raw text, declared_code text, origin text, quantity numeric, unit text,
        value numeric, currency text, language text, extra text
    ) ON COMMIT DELETE ROWS
"""
_INSERTED_COLUMNS = """
    batch_id, submitter_id, identity_key, version, content_hash, external_id, item_no, product_name, spec,
    description_raw, description_normalized, declared_code, origin, quantity, unit, value, currency, language,
    extra, status, claimed_by, attempts, last_error, created_at
"""
# {version}: the version each staged row is inserted as.
_SELECT_STAGED = """
    SELECT %(batch)s, %(submitter)s, staged.identity_key, {version}, staged.content_hash, staged.external_id,
           staged.item_no, staged.product_name, staged.spec, staged.description_raw, '', staged.declared_code,
           staged.origin, staged.quantity, staged.unit, staged.value, staged.currency, staged.language,
           staged.extra::jsonb, %(pending)s, '', 0, '', %(now)s
    FROM {{staging}} AS staged
"""
_INSERT_FIRST_VERSIONS = f"""
    INSERT INTO {{items}} ({_INSERTED_COLUMNS})
    {_SELECT_STAGED.format(version=1)}
    ORDER BY staged.row_number
    ON CONFLICT DO NOTHING
"""
# Each remaining key's latest version for this submitter; a row is inserted as the next one unless it says the same.
_INSERT_NEXT_VERSIONS = f"""
    INSERT INTO {{items}} ({_INSERTED_COLUMNS})
    {_SELECT_STAGED.format(version="COALESCE(latest.version, 0) + 1")}
    LEFT JOIN LATERAL (
        SELECT known.version, known.content_hash FROM {{items}} AS known
        WHERE known.submitter_id {{submitter}} AND known.identity_key = staged.identity_key
        ORDER BY known.submitter_id DESC, known.identity_key DESC, known.version DESC LIMIT 1
    ) AS latest ON true
    WHERE latest.content_hash IS DISTINCT FROM staged.content_hash
    ORDER BY staged.row_number
    ON CONFLICT DO NOTHING
"""


def _prepare_staging_table(cursor) -> None:
    """The staging table on this connection, created on first use (a rolled-back chunk takes it away).

    It is empty here: each commit empties it, and a chunk that ends in a savepoint empties it itself.
    """
    cursor.execute("SELECT to_regclass(%s)", [f"pg_temp.{STAGING_TABLE}"])
    if cursor.fetchone()[0] is None:
        cursor.execute(_CREATE_STAGING_TABLE)


def _commit_without_waiting_for_disk() -> None:
    """A chunk's commit does not wait for its WAL to reach the disk (synchronous_commit off, this transaction only).

    A crash can then lose only chunks of an import that had not finished: its batch is still `importing`
    (an upload is resumed by the sweeper and its identity keys skip what survived; an API or command import
    fails with its caller). The final update of the batch commits as usual, and its flush takes every chunk's
    WAL to the disk with it.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")


def _create_row_errors(*, batch: DeclarationBatch, rows: Sequence[RowProblem]) -> None:
    if not rows:
        return
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY {ImportRowError._meta.db_table} (batch_id, row_number, reason, raw) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row((batch.pk, row.row_number, _storable(row.reason), _storable(row.raw)))


def _create_reference_entries(rows: Sequence[ItemRow], *, since) -> list[int]:
    """Approved historical declarations become reference evidence; returns the ids of this batch's entries.

    Entries created at or after `since` (the batch's creation) count as this batch's: a re-run of an
    interrupted reference import reports the ones its first run wrote as created, not as duplicates.
    """
    if not rows:
        return []
    glossary = glossary_mapping()
    keys = [row.identity_key for row in rows]
    existing = set(KnowledgeEntry.objects.filter(
        source=KnowledgeEntry.Source.REFERENCE, identity_key__in=keys
    ).values_list("identity_key", flat=True))
    fresh = {row.identity_key: row for row in rows if row.identity_key not in existing}
    entries = [
        KnowledgeEntry(
            source=KnowledgeEntry.Source.REFERENCE, identity_key=key, hs_code=row.fields["declared_code"],
            chapter=row.fields["declared_code"][:2], language=row.fields["language"],
            text=normalize_description(item_text(row.fields["description_raw"], row.fields.get("product_name") or ""),
                                       glossary=glossary) or row.fields["description_raw"],
            display_text=row.fields["description_raw"],
        )
        for key, row in fresh.items()
    ]
    KnowledgeEntry.objects.bulk_create(entries, ignore_conflicts=True)
    return list(KnowledgeEntry.objects.filter(
        source=KnowledgeEntry.Source.REFERENCE, identity_key__in=keys, created_at__gte=since,
    ).values_list("id", flat=True))


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL: a bad row's sample shows it as U+FFFD instead."""
    return text.replace("\x00", "\ufffd")


def _fail_batch(*, batch: DeclarationBatch, reason: str) -> ImportReport:
    DeclarationBatch.objects.filter(pk=batch.pk).update(status=DeclarationBatch.Status.FAILED, failure_reason=reason)
    batch.refresh_from_db()
    return ImportReport(batch.pk, batch.rows_read, batch.items_created, batch.duplicates, batch.rows_rejected, reason)


def _chunks(rows: Iterator, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _read_ahead(chunks: Iterator[list]) -> Iterator[list]:
    """The chunks of `chunks`, read by a thread one chunk ahead: the file is parsed while the database writes.

    The thread only reads, parses and formats (no database access: the connection stays with the caller). Its
    exception is raised here where its chunk would have been; memory holds at most three chunks.
    If the caller stops early (an error while writing), the thread stops at its next chunk.
    """
    handover: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: tuple) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                handover.put(item, timeout=0.1)
                return True
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not hand_over((chunk, None)):
                    return
            hand_over((None, None))
        except BaseException as error:  # noqa: BLE001 - handed to the caller, who raises it
            hand_over((None, error))
        finally:
            if isinstance(chunks, Generator):
                chunks.close()

    reader = threading.Thread(target=read, name="import-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            chunk, error = handover.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()
        reader.join()


# --- queueing (always after commit: a task must see the rows it is about) -----------------------

def queue_verification(*, items: int = 1) -> None:
    """Queue verification tasks for `items` new pending items: one per claim chunk, at most one per worker
    process (settings.VERIFICATION_PARALLEL_TASKS); each task claims chunks until none is pending."""
    from .pipeline import CLAIM_CHUNK_ITEMS

    tasks = max(1, min(math.ceil(items / CLAIM_CHUNK_ITEMS), settings.VERIFICATION_PARALLEL_TASKS))
    for _ in range(tasks):
        queue_on_commit("verification.verify_pending_items")


def queue_knowledge_indexing(*, entry_ids: Sequence[int]) -> None:
    for start in range(0, len(entry_ids), INDEX_CHUNK_ENTRIES * 4):
        queue_on_commit("verification.index_knowledge_entries",
                        kwargs={"entry_ids": list(entry_ids[start:start + INDEX_CHUNK_ENTRIES * 4])})


def index_knowledge_entries(*, entry_ids: Sequence[int]) -> int:
    """Embed these knowledge entries as documents into the active space (idempotent: vectors are upserted)."""
    from .knowledge import index_knowledge_texts

    done = 0
    for start in range(0, len(entry_ids), INDEX_CHUNK_ENTRIES):
        rows = list(KnowledgeEntry.objects.filter(id__in=entry_ids[start:start + INDEX_CHUNK_ENTRIES])
                    .order_by("id").values_list("id", "text"))
        if rows:
            index_knowledge_texts(entry_ids=[r[0] for r in rows], texts=[r[1] for r in rows])
            done += len(rows)
    return done


# --- review -----------------------------------------------------------------------------------


class ReviewRefused(ValueError):
    """A review action that cannot apply to this item (no verdict, no recommendation, bad code)."""


def review_item(
    *, item: DeclarationItem, reviewer: AbstractBaseUser, action: str, code: str = "", reason: str = "",
) -> Review:
    """Record one reviewer decision (append-only) and apply it.

    1. Work out the code the decision settles on (declared, recommended, or given).
    2. Append the Review, mark the verdict reviewed and set its final code.
    3. An approved code makes the item a reference (KnowledgeEntry) indexed after commit.
    """
    verdict = Verdict.objects.filter(item=item).first()
    current = (verdict.final_code if verdict else "") or item.declared_code
    if action == Review.Action.CONFIRM_DECLARED:
        if not item.declared_code:
            raise ReviewRefused(f"item {item.pk} has no declared code to confirm")
        to_code = item.declared_code
    elif action == Review.Action.ACCEPT_RECOMMENDATION:
        if verdict is None or not verdict.recommended_code:
            raise ReviewRefused(f"item {item.pk} has no recommendation to accept")
        to_code = verdict.recommended_code
    elif action == Review.Action.SET_CODE:
        to_code = "".join(code.split()).replace(".", "")
        if not (to_code.isdigit() and len(to_code) in (2, 4, 6, 8, 10)):
            raise ReviewRefused(f"{code!r} is not an HS code (2, 4, 6, 8 or 10 digits)")
    elif action == Review.Action.REJECT:
        to_code = ""
        if not reason.strip():
            raise ReviewRefused("a rejection needs a reason")
    else:
        raise ReviewRefused(f"unknown review action {action!r}")
    with transaction.atomic():
        review = Review.objects.create(
            item=item, reviewer=reviewer, action=action, from_code=current, to_code=to_code, reason=reason,
            tier_at_review=verdict.tier if verdict else "",
        )
        if verdict is not None:
            Verdict.objects.filter(pk=verdict.pk).update(reviewed=True, final_code=to_code)
        if to_code:
            _make_reference(item=item, code=to_code)
        else:
            # A rejected item is no evidence: if an earlier review made it a reference, withdraw it.
            _withdraw_reference(item=item)
    return review


def review_items(
    *, items: Iterable[DeclarationItem], reviewer: AbstractBaseUser, action: str, code: str = "", reason: str = "",
) -> tuple[int, list[str]]:
    """The same decision on many items; returns how many were reviewed and why the others were refused."""
    done, refusals = 0, []
    for item in items:
        try:
            review_item(item=item, reviewer=reviewer, action=action, code=code, reason=reason)
            done += 1
        except ReviewRefused as error:
            refusals.append(str(error))
    return done, refusals


def _make_reference(*, item: DeclarationItem, code: str) -> None:
    text = item.description_normalized or normalize_description(item_text(item.description_raw, item.product_name),
                                                                glossary=glossary_mapping())
    entry, _ = KnowledgeEntry.objects.update_or_create(
        source=KnowledgeEntry.Source.REFERENCE, identity_key=item.identity_key,
        defaults={"hs_code": code, "chapter": code[:2], "language": item.language,
                  "text": text or item.description_raw, "display_text": item.description_raw},
    )
    queue_knowledge_indexing(entry_ids=[entry.pk])


def _withdraw_reference(*, item: DeclarationItem) -> None:
    from .knowledge import delete_knowledge_vectors

    entry_ids = list(KnowledgeEntry.objects.filter(
        source=KnowledgeEntry.Source.REFERENCE, identity_key=item.identity_key
    ).values_list("id", flat=True))
    if entry_ids:
        delete_knowledge_vectors(entry_ids=entry_ids)
        KnowledgeEntry.objects.filter(id__in=entry_ids).delete()



# --- uploads: saved first, imported by a worker, so a big file never holds a web request -------
# The file waits in PostgreSQL (UploadedFileChunk), which web and workers share; they share no filesystem.

UPLOAD_STORED_IN_DATABASE = "database"
# Size of one stored piece: big enough for few rows per file, small enough to stream through memory.
UPLOAD_CHUNK_BYTES = 1024 * 1024


def accept_upload(
    *, uploaded_file, mode: str, is_reference: bool = False, created_by: AbstractBaseUser | None = None,
) -> DeclarationBatch:
    """Store an uploaded file in PostgreSQL with its batch, in one transaction, and queue its import.

    The batch page polls the import's progress. A failure while storing leaves no batch behind.
    """
    with transaction.atomic():
        batch = create_batch(source=DeclarationBatch.Source.FILE, mode=mode, file_name=Path(uploaded_file.name).name,
                             is_reference=is_reference, created_by=created_by)
        for position, data in enumerate(_pieces(uploaded_file)):
            UploadedFileChunk.objects.create(batch=batch, position=position, data=data)
        DeclarationBatch.objects.filter(pk=batch.pk).update(upload_path=UPLOAD_STORED_IN_DATABASE)
        batch.upload_path = UPLOAD_STORED_IN_DATABASE
        queue_on_commit("verification.import_uploaded_batch", kwargs={"batch_id": batch.pk})
    return batch


def _pieces(uploaded_file) -> Iterator[bytes]:
    """The file in UPLOAD_CHUNK_BYTES pieces (a file held in memory gives its chunks() as one piece)."""
    buffer = bytearray()
    for chunk in uploaded_file.chunks(UPLOAD_CHUNK_BYTES):
        buffer += chunk
        while len(buffer) >= UPLOAD_CHUNK_BYTES:
            yield bytes(buffer[:UPLOAD_CHUNK_BYTES])
            del buffer[:UPLOAD_CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


@contextlib.contextmanager
def stored_upload(*, batch: DeclarationBatch) -> Iterator[IO[bytes] | None]:
    """The batch's uploaded file, copied from PostgreSQL into a temporary file of this worker; None if gone.

    A local copy, because the reader checks the whole file's encoding before it reads rows (it seeks).
    """
    pieces = (UploadedFileChunk.objects.filter(batch=batch).order_by("position")
              .values_list("data", flat=True).iterator(chunk_size=4))
    with tempfile.TemporaryFile(prefix=f"upload-{batch.pk}-") as copy:
        found = False
        for data in pieces:
            copy.write(data)
            found = True
        copy.seek(0)
        yield copy if found else None


def import_uploaded_batch(*, batch_id: int) -> ImportReport | None:
    """Import a stored upload once: a batch already past `importing` is left alone (the task ran before).

    One run per batch at a time (an advisory lock, which dies with its worker); a later run after
    an interrupted one resumes: items already imported are skipped and counted as the batch's own.
    """
    with advisory_lock(import_lock_name(batch_id)) as acquired:
        if not acquired:
            return None  # this batch's import is running in another worker
        return _import_uploaded_batch(batch_id=batch_id)


def import_lock_name(batch_id: int) -> str:
    return f"import-batch:{batch_id}"


def _import_uploaded_batch(*, batch_id: int) -> ImportReport | None:
    with transaction.atomic():
        batch = DeclarationBatch.objects.select_for_update().get(pk=batch_id)
        if batch.status != DeclarationBatch.Status.IMPORTING or not batch.upload_path:
            return None
        DeclarationBatch.objects.filter(pk=batch.pk).update(
            import_attempts=F("import_attempts") + 1, import_attempted_at=timezone.now())
        # A previous run may have died mid-file: its items stay (identity keys make this run skip them),
        # its row errors are reported again by this run.
        ImportRowError.objects.filter(batch=batch).delete()
    with stored_upload(batch=batch) as stream:
        if stream is None:
            return _fail_batch(batch=batch, reason="the uploaded file is no longer stored on the server")
        report = import_declaration_file(batch=batch, stream=stream, file_name=batch.file_name)
    # Only once imported: a run that dies part-way leaves the file for the next run to resume.
    UploadedFileChunk.objects.filter(batch=batch).delete()
    return report


def sweep_stuck_work() -> int:
    """Return stuck work to the queue (items, and uploads left importing), close finished batches, and queue
    verification if anything waits; returns how many items were swept back."""
    from .pipeline import finish_batches, has_pending_items, sweep_stuck_items

    swept = sweep_stuck_items()
    resume_stuck_imports()
    finish_batches()
    if has_pending_items():
        send_task("verification.verify_pending_items")  # the sweep commits as it goes: nothing to wait for
    return swept


# A batch whose import was started (or re-queued) this many times and is still `importing` is failed.
MAX_IMPORT_ATTEMPTS = 5


def resume_stuck_imports(*, older_than_seconds: int | None = None) -> tuple[int, int]:
    """Re-queue the import of uploads left in `importing` (their worker was lost); returns (resumed, failed).

    A batch counts as stuck when its last import run started (or its upload arrived) longer ago than
    the stuck-work timeout and no worker holds its import lock. Past MAX_IMPORT_ATTEMPTS it is failed
    with the reason instead; the items it imported so far stay and are verified.
    """
    timeout = older_than_seconds if older_than_seconds is not None else settings.STUCK_WORK_TIMEOUT_SECONDS
    cutoff = timezone.now() - timezone.timedelta(seconds=timeout)
    stuck = DeclarationBatch.objects.filter(status=DeclarationBatch.Status.IMPORTING).exclude(upload_path="").filter(
        Q(import_attempted_at__lt=cutoff) | Q(import_attempted_at__isnull=True, created_at__lt=cutoff))
    resumed = failed = 0
    for batch in stuck:
        if not lock_is_free(import_lock_name(batch.pk)):
            continue  # still importing, just slowly
        if batch.import_attempts >= MAX_IMPORT_ATTEMPTS:
            _fail_batch(batch=batch, reason=f"the import was started {batch.import_attempts} times and never "
                                            "finished (its worker was lost each time); upload the file again")
            failed += 1
            continue
        DeclarationBatch.objects.filter(pk=batch.pk).update(import_attempted_at=timezone.now())
        queue_on_commit("verification.import_uploaded_batch", kwargs={"batch_id": batch.pk})
        resumed += 1
    return resumed, failed


def save_calibration(*, space, chapter: str, thresholds, note: str):
    """Store calibrated thresholds for a space (and chapter); staff can still edit them afterwards."""
    from .routing import CHECK_THRESHOLD_FIELDS

    row, _ = RoutingThreshold.objects.update_or_create(
        space=space, chapter=chapter,
        defaults={"auto_pass_min_confidence": thresholds.auto_pass_min_confidence,
                  "review_margin": thresholds.review_margin,
                  "novelty_max_similarity": thresholds.novelty_max_similarity,
                  **{name: getattr(thresholds, name) for name in CHECK_THRESHOLD_FIELDS},
                  "calibrated_at": timezone.now(), "calibration_note": note},
    )
    return row


def requeue_failed_items(*, item_ids: Iterable[int]) -> int:
    """Give failed items (attempts used up, e.g. by a long endpoint outage) a fresh start; returns how many."""
    item_ids = list(item_ids)  # read twice below: a generator would be empty the second time
    with transaction.atomic():
        count = DeclarationItem.objects.filter(id__in=item_ids, status=DeclarationItem.Status.FAILED).update(
            status=DeclarationItem.Status.PENDING, attempts=0, claimed_at=None,
        )
        batch_ids = DeclarationItem.objects.filter(id__in=item_ids).values_list("batch_id", flat=True)
        DeclarationBatch.objects.filter(id__in=batch_ids, status=DeclarationBatch.Status.DONE,
                                        is_reference=False).update(status=DeclarationBatch.Status.PROCESSING)
        if count:
            queue_verification(items=count)
    return count
