from __future__ import annotations

from django.core.management.base import BaseCommand

from verifier.pipeline import CLAIM_CHUNK_ITEMS, process_pending, sweep_stuck_items


class Command(BaseCommand):
    help = (
        "Verify pending declaration items in this process (what the Celery task does), after returning items "
        "stuck in processing past STUCK_WORK_TIMEOUT_SECONDS to the queue. Safe beside running workers."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chunk-size", type=int, default=CLAIM_CHUNK_ITEMS)
        parser.add_argument("--time-budget", type=float, default=None, help="stop claiming after this many seconds")

    def handle(self, *args, chunk_size: int, time_budget: float | None, **options) -> None:
        swept = sweep_stuck_items()
        verified = process_pending(chunk_size=chunk_size, time_budget_seconds=time_budget)
        self.stdout.write(f"{swept} stuck items re-queued, {verified} items verified")
