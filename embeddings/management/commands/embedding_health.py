import json

from django.core.management.base import BaseCommand, CommandError

from embeddings.client import get_client
from embeddings.errors import EmbeddingError
from embeddings.golden import check_golden_neighbours
from embeddings.selectors import endpoint_health


class Command(BaseCommand):
    help = ("Report the embedding endpoint's reachability, served model and dimension, and whether they match "
            "the active embedding space (JSON). Exits with an error when they do not. With --golden, also checks "
            "that known texts find their known neighbours through it (a server can serve the right shape and "
            "wrong meaning).")

    def add_arguments(self, parser):
        parser.add_argument("--golden", action="store_true",
                            help="also embed about 25 known texts and check their nearest neighbours and that "
                                 "batching does not change vectors")

    def handle(self, *args, golden: bool, **options) -> None:
        report = endpoint_health()
        if golden and report["endpoint"]["reachable"]:
            try:
                report["golden"] = check_golden_neighbours(get_client()).to_json()
            except EmbeddingError as error:
                report["golden"] = {"passed": False, "checked": 0, "misses": [f"the endpoint failed: {error}"]}
        self.stdout.write(json.dumps(report, indent=2, default=str, ensure_ascii=False))
        if not report["endpoint"]["reachable"]:
            raise CommandError(f"embedding endpoint unreachable: {report['endpoint']['error']}")
        if not report["matches_active_space"]:
            raise CommandError(
                f"endpoint serves {report['endpoint']['model']} at {report['endpoint']['dimensions']} dimensions; "
                f"active space: {report['active_space']}; configured: {report['configured']}"
            )
        if golden and not report["golden"]["passed"]:
            misses = report["golden"]["misses"]
            raise CommandError(f"the golden check failed ({len(misses)} of {report['golden']['checked']}): {misses[0]}")
