import csv

from django.core.management.base import BaseCommand, CommandError

from faq.evaluation import DatasetError, read_csv, split_rows


def bucket_set(value: str) -> set[int]:
    return {int(part) for part in value.split(",") if part.strip()}


class Command(BaseCommand):
    help = ("Split a CSV reproducibly by a hash of each row's key columns: a row goes to --test-out when its bucket "
            "(sha256 mod --buckets) is in --test-buckets, to --train-out when in --train-buckets (default: all "
            "others). Example (BANKING77, 20%% held out): split_csv train.csv --key question --buckets 5 "
            "--train-out var/faq/b77_library.csv --test-out var/faq/b77_queries.csv")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--train-out", required=True)
        parser.add_argument("--test-out", required=True)
        parser.add_argument("--buckets", type=int, default=5)
        parser.add_argument("--test-buckets", type=bucket_set, default={0})
        parser.add_argument("--train-buckets", type=bucket_set, default=None)
        parser.add_argument("--key", default="", help="comma-separated key columns (default: every column)")

    def handle(self, *args, path: str, train_out: str, test_out: str, buckets: int, test_buckets: set[int],
               train_buckets: set[int] | None, key: str, **options) -> None:
        try:
            rows = read_csv(path, required=tuple(column for column in key.split(",") if column))
        except DatasetError as error:
            raise CommandError(str(error)) from error
        if not rows:
            raise CommandError(f"{path}: no rows")
        columns = list(rows[0])
        key_columns = [column for column in key.split(",") if column] or columns
        train, test = split_rows(rows, buckets=buckets, test_buckets=test_buckets, train_buckets=train_buckets,
                                 key_columns=key_columns)
        for out_path, part in ((train_out, train), (test_out, test)):
            with open(out_path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(part)
        self.stdout.write(f"{len(train)} rows -> {train_out}, {len(test)} rows -> {test_out}")
