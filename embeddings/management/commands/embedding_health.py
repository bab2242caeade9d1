import json

from django.core.management.base import BaseCommand, CommandError

from embeddings.selectors import endpoint_health


class Command(BaseCommand):
    help = ("Report the embedding endpoint's reachability, served model and dimension, and whether they match "
            "the active embedding space (JSON). Exits with an error when they do not.")

    def handle(self, *args, **options) -> None:
        report = endpoint_health()
        self.stdout.write(json.dumps(report, indent=2, default=str))
        if not report["endpoint"]["reachable"]:
            raise CommandError(f"embedding endpoint unreachable: {report['endpoint']['error']}")
        if not report["matches_active_space"]:
            raise CommandError(
                f"endpoint serves {report['endpoint']['model']} at {report['endpoint']['dimensions']} dimensions; "
                f"active space: {report['active_space']}; configured: {report['configured']}"
            )
