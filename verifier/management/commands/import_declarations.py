from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from verifier.models import DeclarationBatch
from verifier.services import create_batch, import_declaration_file, index_knowledge_entries


class Command(BaseCommand):
    help = (
        "Import declaration items from a CSV, JSON (array) or JSON Lines file (UTF-8, UTF-8 with BOM or GB18030) "
        "and queue their verification. With --reference the rows are approved historical declarations: they "
        "become reference evidence in the knowledge base and are indexed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--reference", action="store_true",
                            help="rows are approved declarations with a correct hs_code")
        parser.add_argument("--mode", choices=DeclarationBatch.Mode.values, default=DeclarationBatch.Mode.CHECK,
                            help="check declared codes (default), fill missing codes, or suggest a code for every item")
        parser.add_argument("--no-index", action="store_true",
                            help="with --reference: leave embedding the new references to the worker")

    def handle(self, *args, path: Path, reference: bool, mode: str, no_index: bool, **options) -> None:
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        batch = create_batch(source=DeclarationBatch.Source.COMMAND, mode=mode, file_name=path.name,
                             is_reference=reference)
        with path.open("rb") as stream:
            report = import_declaration_file(batch=batch, stream=stream, file_name=path.name)
        if report.failure_reason:
            raise CommandError(f"batch {batch.pk}: {path} could not be read: {report.failure_reason}")
        self.stdout.write(
            f"batch {batch.pk}: {report.rows_read} rows read, {report.items_created} "
            f"{'references' if reference else 'items'} created, {report.duplicates} duplicates skipped, "
            f"{report.rows_rejected} rows rejected"
        )
        for error in batch.row_errors.order_by("row_number")[:20]:
            self.stdout.write(f"  row {error.row_number}: {error.reason}")
        if report.rows_rejected > 20:
            self.stdout.write(f"  ... and {report.rows_rejected - 20} more (download them from the batch page)")
        if reference and not no_index:
            from verifier.models import KnowledgeEntry

            entry_ids = list(KnowledgeEntry.objects.filter(source=KnowledgeEntry.Source.REFERENCE)
                             .filter(vector_missing_filter()).values_list("id", flat=True))
            self.stdout.write(f"indexed {index_knowledge_entries(entry_ids=entry_ids)} reference entries")


def vector_missing_filter():
    """References with no vector in the active space yet (this import's, and any a worker has not reached)."""
    from embeddings.selectors import has_vector
    from embeddings.store import active_space
    from verifier.models import KNOWLEDGE_CORPORA

    return ~has_vector(space=active_space(), corpus=KNOWLEDGE_CORPORA)
