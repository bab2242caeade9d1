"""`python -m bench ingest`: rows/s importing a large declaration CSV through the service's importer, vs raw COPY.

1. Generate a CSV of --rows declaration items (100,000 by default; deterministic,
   Chinese and English descriptions, a few percent of bad rows and duplicates, as
   real files have) into a temporary file.
2. Floor: `COPY ... FROM STDIN (FORMAT csv)` of the same bytes into a plain table
   of text columns: what PostgreSQL itself can take on this machine.
3. Figure: verifier.services.import_declaration_file over the same file (encoding
   sniffing, row checks, identity keys, row errors; chunks of rows COPYed into a
   staging table and inserted from it, the next chunk parsed meanwhile).

Both run against a dedicated database (`bench_ingest` on the same server, migrated
on first use), never the service's own data. Queueing verification is left out
(one message per batch). Peak RSS is this process's high-water mark during the
import, reset before it starts (/proc/self/clear_refs).

JSON last line: rows, import_rows_per_second, copy_rows_per_second (floor), ratio, peak_rss_mib.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .common import Stopwatch, emit, machine_description, peak_rss_mib

DATABASE_NAME = "bench_ingest"
COLUMNS = ["id", "item_no", "product_name", "spec", "description", "hs_code", "origin",
           "quantity", "unit", "value", "currency", "language"]
PRODUCTS_ZH = ["笔记本电脑", "蓝牙耳机", "不锈钢保温杯", "棉制针织T恤", "冷冻虾仁", "锂离子电池", "塑料玩具车",
               "陶瓷餐盘"]
PRODUCTS_EN = ["laptop computer", "bluetooth earphones", "stainless steel vacuum flask", "knitted cotton T-shirt",
               "frozen shrimp meat", "lithium-ion battery", "plastic toy car", "ceramic dinner plate"]
CODES = ["8471300000", "8518300000", "9617001900", "6109100000", "0306171900", "8507600000", "9503008900", "6911101900"]
SPECS = ["型号A{0}", "规格{0}mm", "model X{0}", "{0}g/pc", "{0} pcs/ctn"]
# One row in fifty is bad (a broken code or a missing number), one in a hundred repeats an earlier id.
BAD_ROW_EVERY = 50
DUPLICATE_ROW_EVERY = 100


def generate_csv(path: Path, *, rows: int, seed: int = 6) -> None:
    generator = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as output:
        writer = csv.writer(output)
        writer.writerow(COLUMNS)
        for number in range(1, rows + 1):
            kind = generator.randrange(len(PRODUCTS_EN))
            chinese = generator.random() < 0.5
            declaration = number // 5 + 1
            if number % DUPLICATE_ROW_EVERY == 1 and number > DUPLICATE_ROW_EVERY:
                declaration -= 3  # the same declaration id and item number as the row 15 lines above
            product = PRODUCTS_ZH[kind] if chinese else PRODUCTS_EN[kind]
            spec = generator.choice(SPECS).format(generator.randrange(1, 999))
            code = CODES[kind] if number % BAD_ROW_EVERY else "84X1"
            writer.writerow([
                f"DEC{declaration:09d}", str(number % 5 + 1), product, spec,
                f"{product} {spec} {'用途：零售' if chinese else 'for retail sale'}", code,
                generator.choice(["CN", "VN", "DE", "US"]), str(generator.randrange(1, 5000)),
                generator.choice(["PCS", "KG", "SET"]), f"{generator.uniform(1, 90000):.2f}", "USD",
                "zh" if chinese else "en",
            ])


def bench_database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        from devservices.postgres import ensure_postgres

        url = ensure_postgres()
    return urlsplit(url)._replace(path=f"/{DATABASE_NAME}").geturl()


def ensure_database(url: str) -> None:
    import psycopg

    admin_url = urlsplit(url)._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
            admin.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def copy_floor(path: Path, *, rows: int) -> float:
    """Rows/s of COPY of the file's bytes into a plain table of text columns (a fresh one each run)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_declarations")
        cursor.execute("CREATE TABLE bench_raw_declarations (" + ", ".join(f'"{c}" text' for c in COLUMNS) + ")")
        with Stopwatch() as watch:
            with cursor.copy("COPY bench_raw_declarations FROM STDIN WITH (FORMAT csv, HEADER true)") as copy, \
                    open(path, "rb") as source:
                while chunk := source.read(1 << 20):
                    copy.write(chunk)
        copied = cursor.execute("SELECT count(*) FROM bench_raw_declarations").fetchone()[0]
        cursor.execute("DROP TABLE bench_raw_declarations")
    if copied != rows:
        raise RuntimeError(f"COPY loaded {copied} rows, expected {rows}")
    return rows / watch.seconds


def import_through_service(path: Path) -> tuple[float, object]:
    from verifier import services

    # Verification is queued once per batch; the benchmark measures the import itself.
    services.queue_verification = lambda *, items=1: None
    batch = services.create_batch(source="command", file_name=path.name)
    with Stopwatch() as watch, open(path, "rb") as stream:
        report = services.import_declaration_file(batch=batch, stream=stream, file_name=path.name)
    return watch.seconds, report


def reset_service_tables() -> None:
    """Each run imports into empty tables, so no row is a duplicate of a previous run's."""
    from django.db import connection

    from verifier.models import DeclarationBatch

    with connection.cursor() as cursor:  # the dedicated benchmark database only
        cursor.execute(f"TRUNCATE {DeclarationBatch._meta.db_table} CASCADE")


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak then includes the set-up


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the generated CSV (default 100000)")
    parser.add_argument("--csv", type=Path, help="import this CSV instead of generating one")
    arguments = parser.parse_args(argv)

    url = bench_database_url()
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    def log(message: str) -> None:
        print(f"[ingest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        path = arguments.csv or Path(scratch) / f"declarations-{arguments.rows}.csv"
        if arguments.csv is None:
            log(f"generating {arguments.rows:,} rows")
            generate_csv(path, rows=arguments.rows)
        with open(path, "rb") as source:
            rows = sum(1 for _ in csv.reader(line.decode("utf-8") for line in source)) - 1
        size_mib = path.stat().st_size / 2**20
        log(f"raw COPY of {rows:,} rows ({size_mib:.1f} MiB)")
        copy_rows_per_second = copy_floor(path, rows=rows)
        reset_service_tables()
        log("import through verifier.services.import_declaration_file")
        reset_peak_rss()
        import_seconds, report = import_through_service(path)
        import_peak_mib = peak_rss_mib()
    import_rows_per_second = report.rows_read / import_seconds
    result = {
        "benchmark": "ingest",
        "machine": machine_description(),
        "rows": rows,
        "file_mib": round(size_mib, 1),
        "import_rows_per_second": round(import_rows_per_second),
        "copy_rows_per_second": round(copy_rows_per_second),
        "ratio": round(import_rows_per_second / copy_rows_per_second, 3),
        "import_seconds": round(import_seconds, 2),
        "items_created": report.items_created,
        "duplicates": report.duplicates,
        "rows_rejected": report.rows_rejected,
        "peak_rss_mib": round(import_peak_mib, 1),
        "figures": [{
            "figure": f"ingest: CSV rows/s through the importer ({rows:,} rows, peak RSS {import_peak_mib:.0f} MiB)",
            "value": round(import_rows_per_second), "floor": round(copy_rows_per_second),
            "floor_name": "raw COPY rows/s", "ratio": round(import_rows_per_second / copy_rows_per_second, 3),
        }],
    }
    emit(result, as_json_only=arguments.json)
