"""python manage.py fit_hs_prototypes"""
from __future__ import annotations

from django.core.management.base import BaseCommand

from embeddings.store import active_space
from verifier.prototypes import fit_prototypes


class Command(BaseCommand):
    help = (
        "Fit the chapter and heading prototypes of the active embedding space from its knowledge-base vectors "
        "(searches refit them by themselves when the knowledge base changes; this does it now)."
    )

    def handle(self, *args, **options):
        model = fit_prototypes(space=active_space())
        self.stdout.write(f"fitted prototypes of space {model.space_id} on {model.entries} evidence vectors")
