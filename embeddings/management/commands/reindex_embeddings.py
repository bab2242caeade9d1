import time

from django.core.management.base import BaseCommand

from embeddings.cache_statistics import cache_statistics
from embeddings.selectors import space_statuses
from embeddings.services import (
    RETIRED_SPACE_GRACE_SECONDS,
    drop_retired_spaces,
    run_space_build,
    start_space_build,
    sync_embeddings,
)


class Command(BaseCommand):
    help = ("Build the embedding space of the configured EMBEDDING_MODEL/EMBEDDING_DIMENSIONS beside the active "
            "one (a background Celery task; --run does it here), then switch to it atomically. With nothing to "
            "switch, re-embed objects whose text changed or that are missing. --status shows progress.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--status", action="store_true", help="only show spaces and build progress")
        parser.add_argument("--run", action="store_true", help="build in this process instead of a Celery task")
        parser.add_argument("--chunk-size", type=int, default=256, help="objects per chunk with --run")
        parser.add_argument("--grace-seconds", type=float, default=RETIRED_SPACE_GRACE_SECONDS,
                            help="with --run: wait this long after the switch, then drop the old space's vectors")

    def handle(self, *args, status: bool, run: bool, chunk_size: int, grace_seconds: float, **options) -> None:
        if not status:
            space = start_space_build()
            if space is None:
                report = sync_embeddings()
                self.stdout.write(f"active space is current; re-embedded {report.objects_embedded} of "
                                  f"{report.objects_seen} objects" + (
                                      f"; failed: {', '.join(report.failed_corpora)}" if report.failed_corpora else ""))
            elif run:
                switched = run_space_build(space_id=space.id, chunk_size=chunk_size, grace_seconds=grace_seconds)
                self.stdout.write(f"space {space.id} {'is now active' if switched else 'is still building'}")
                if switched and grace_seconds > 0:
                    # Searches that picked the old space just before the switch finish against it first.
                    time.sleep(grace_seconds)
                    dropped = drop_retired_spaces(grace_seconds=grace_seconds)
                    self.stdout.write(f"dropped {dropped} vectors of the retired space")
            else:
                self.stdout.write(f"building space {space.id} in the background (see --status)")
        for space in space_statuses():
            self.stdout.write(f"space {space.space_id}: {space.model_name}, {space.dimensions} dims, "
                              f"{space.prompt_version}, {space.state}, {space.vectors} vectors")
            for corpus in space.corpora:
                state = "done" if corpus.finished else f"after id {corpus.last_object_id}"
                self.stdout.write(f"  {corpus.corpus}: {state}, {corpus.objects_seen} seen, "
                                  f"{corpus.objects_embedded} embedded")
        cache = cache_statistics()["all_processes"]
        self.stdout.write(f"embedding cache: {cache['hits']} hits, {cache['misses']} misses, "
                          f"hit rate {cache['hit_rate']}")
