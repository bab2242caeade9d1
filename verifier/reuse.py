"""Reusing verdicts: an item judged exactly like an earlier one gets a copy of that verdict, not a new search.

Declarations repeat products. The same description with the same declared code, in the same mode, against
the same knowledge base, thresholds and judging code is always judged the same: the embedding is cached, the
search, the vote and the routing are deterministic. So each verdict carries the key of what it judged
(`Verdict.judgement_key`); a chunk of items looks all its keys up in one query and copies the verdicts it
finds in one statement, and only the rest are embedded, searched and voted on.

What the key covers, and how each part is known to have changed:
- the item: its normalised description (so the glossary's rewriting is in it), mode and declared code;
- the knowledge base: KnowledgeVersion (entries and codes) and the knowledge corpora's vector version
  (embeddings.selectors.corpus_version; the prototypes are refitted from those vectors), both kept by
  triggers in PostgreSQL;
- the thresholds: the loaded ThresholdSet, whole;
- the judging code: a digest of the source of the modules that judge (a deploy that changes the vote or the
  routing never reuses a verdict of the code before).
A reviewed verdict is never copied: its final code is an officer's, not the machine's.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import os
from collections.abc import Collection

from django.db import connection

from embeddings.selectors import corpus_version

from .models import KNOWLEDGE_CORPORA, KnowledgeVersion

# How every verdict write (pipeline.upsert_verdicts, copy_verdicts) replaces an item's earlier verdict.
REPLACE_EARLIER_VERDICT = """
    ON CONFLICT (item_id) DO UPDATE SET
        recommended_code = EXCLUDED.recommended_code, recommended_level = EXCLUDED.recommended_level,
        confidence = EXCLUDED.confidence, margin = EXCLUDED.margin,
        best_similarity = EXCLUDED.best_similarity, tier = EXCLUDED.tier, risk = EXCLUDED.risk,
        anomalies = EXCLUDED.anomalies, evidence = EXCLUDED.evidence, final_code = EXCLUDED.final_code,
        space_id = EXCLUDED.space_id, reviewed = EXCLUDED.reviewed, judgement_key = EXCLUDED.judgement_key,
        -- Counted, never reset: a verdict written twice means an item was judged twice.
        writes = verifier_verdict.writes + 1
"""
# The modules whose code decides a verdict (normalisation, evidence, vote, routing, the verdict's explanation).
JUDGING_MODULES = ("verifier.normalization", "verifier.recommendation", "verifier.prototypes", "verifier.routing",
                   "verifier.pipeline", "verifier.reuse", "common.voting")


@functools.cache
def judging_code_digest() -> bytes:
    digest = hashlib.sha256()
    for name in JUDGING_MODULES:
        try:
            digest.update(inspect.getsource(importlib.import_module(name)).encode())
        except (OSError, TypeError):
            # Source not shipped: this process's verdicts are then reused only by this process (never wrongly).
            return os.urandom(32)
    return digest.digest()


def judgement_context(*, space, thresholds) -> bytes:
    """What a verdict depends on besides the item, as one digest; two small indexed queries (once per chunk)."""
    knowledge_version = KnowledgeVersion.objects.values_list("version", flat=True).first() or 0
    vectors_version = corpus_version(space=space, corpus=KNOWLEDGE_CORPORA)
    digest = hashlib.sha256(judging_code_digest())
    digest.update(f"{space.id}\x1f{knowledge_version}\x1f{vectors_version}\x1f{thresholds!r}".encode())
    return digest.digest()


def judgement_key(context: bytes, *, mode: str, declared_code: str, normalized_description: str) -> bytes:
    return hashlib.sha256(context + f"\x1f{mode}\x1f{declared_code}\x1f{normalized_description}".encode()).digest()


def reusable_verdicts(keys: Collection[bytes]) -> dict[bytes, int]:
    """For each key judged before, the id of its latest unreviewed verdict: one query (verdict_judgement_key_idx)."""
    if not keys:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT ON (judgement_key) judgement_key, id FROM verifier_verdict "
            "WHERE judgement_key = ANY(%s) AND NOT reviewed ORDER BY judgement_key, id DESC",
            [list(keys)],
        )
        return {bytes(key): verdict_id for key, verdict_id in cursor.fetchall()}


def copy_verdicts(copies: dict[int, int]) -> set[int]:
    """Write, for each item id, a copy of the verdict it maps to (replacing an earlier verdict of the item, as
    pipeline.upsert_verdicts does); one statement. Returns the items written: a source verdict deleted or
    reviewed since it was looked up is not copied."""
    if not copies:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO verifier_verdict (item_id, recommended_code, recommended_level, confidence, margin,
                best_similarity, tier, risk, anomalies, evidence, final_code, space_id, reviewed, judgement_key,
                created_at)
            SELECT incoming.item_id, source.recommended_code, source.recommended_level, source.confidence,
                   source.margin, source.best_similarity, source.tier, source.risk, source.anomalies,
                   source.evidence, source.final_code, source.space_id, false, source.judgement_key, now()
            FROM unnest(%s::bigint[], %s::bigint[]) AS incoming(item_id, verdict_id)
            JOIN verifier_verdict source ON source.id = incoming.verdict_id AND NOT source.reviewed
            """ + REPLACE_EARLIER_VERDICT + " RETURNING item_id",
            [list(copies), list(copies.values())],
        )
        return {item_id for (item_id,) in cursor.fetchall()}
