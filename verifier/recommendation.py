"""Recommending an HS code for a description: evidence from the knowledge base, then a vote up the hierarchy.

`find_evidence` reads (one embedding call and one nearest-neighbour query per batch);
`recommend_hs_code` is a pure function of that evidence, so the vote is easy to test
and to replay on stored evidence.

The vote: each piece of evidence votes for its code and for that code's heading and
chapter (a heading's note votes for the heading and chapter only). A code's strength
is its best evidence ("max" pooling), not the sum of its evidence: measured on the
hsbench dev files, summing let headings and chapters with many lines outvote the
right one (top-1 at 4 digits 43% summed, 54% pooled by the best). Strengths become
shares with a softmax whose temperature suits e5's compressed cosines. The chapter is
chosen first, then the heading within it, then the subheading within that, and the
recommendation stops at the deepest level whose chosen code holds a majority.

Next to the nearest lines, `find_evidence` adds the description's closest chapter and heading
prototypes (verifier.prototypes: centroids of the knowledge base's own vectors) as evidence of
source "prototype"; at those levels the vote is a weighted geometric mix of the two opinions.
"""
from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import connection

from common.voting import pooled_votes
from embeddings.selectors import nearest_neighbours, stored_vectors
from embeddings.services import embed_queries
from embeddings.store import active_space

from .models import KNOWLEDGE_CORPORA, KnowledgeEntry
from .prototypes import prototype_similarities

LEVELS = (2, 4, 6)
# How many neighbours each description gets; enough for the vote to see a heading's several lines.
DEFAULT_K = 30
# Weight of a neighbour: exp((score - best score) / temperature). e5 cosines of a right and a wrong
# line differ by a few hundredths; 0.02 gave the best auto-pass precision on the hsbench dev files.
VOTE_TEMPERATURE = 0.02
# "max": a code is as strong as its best evidence; "sum": as all its evidence together (see above).
DEFAULT_POOLING = "max"
# The deepest level whose chosen code holds more than this share of its level's vote is where the
# recommendation stops (a majority: a tie is not a recommendation).
CONFIDENT_SHARE = {6: 0.5, 4: 0.5, 2: 0.0}
ALTERNATIVES_KEPT = 5
# Evidence of this source is a prototype (verifier.prototypes), not a knowledge-base line.
PROTOTYPE_SOURCE = "prototype"
# A code's vote at a prototype level: lines^(1 - weight) * exp((prototype cosine - best) / temperature)^weight.
# Measured on the hsbench dev files (zh+en, exact search): weight 0.3 and temperature 0.02 lifted top-1
# at 2 digits 0.733 -> 0.765 and at 4 digits 0.573 -> 0.599; 0.2-0.4 and 0.015-0.03 were all within a point.
PROTOTYPE_WEIGHT = 0.3
PROTOTYPE_TEMPERATURE = 0.02
# Codes the prototypes alone bring into the vote at a level (their line vote is nearly nothing, so they
# win only where the lines say nothing about that level).
PROTOTYPE_CANDIDATES = 5
# Evidence of source DECLARED_SOURCE + level is the closest knowledge line under the declared code cut to that
# level (found by an exact scan of the declared chapter, however far it is): the declared code's own evidence.
DECLARED_SOURCE = "declared_"
# Stands for "no line evidence" in the geometric mix (a zero would veto a code the prototypes favour).
NO_LINE_VOTE = 1e-6


class Evidence(NamedTuple):
    """One piece of evidence. A named tuple, not a frozen dataclass: a chunk of 500 descriptions makes some
    45,000 of them, and a frozen dataclass's __init__ costs several times a tuple's."""

    entry_id: int
    code: str
    source: str
    language: str
    score: float  # cosine similarity of the description and the entry's text
    text: str

    def to_json(self) -> dict:
        return {**self._asdict(), "score": round(self.score, 4)}


class Candidate(NamedTuple):
    code: str
    share: float  # of the vote at its level, 0..1

    def to_json(self) -> dict:
        return {"code": self.code, "share": round(self.share, 4)}


@dataclass(frozen=True)
class LevelSupport:
    """The declared code's part of one level's vote, beside the level's best code (check mode weighs both)."""

    level: int  # 2, 4 or 6 digits
    declared: str  # the declared code cut to this level
    declared_share: float  # 0..1 of the level's vote
    best: str  # the level's best code, over the whole vote (not only within the chosen chapter)
    best_share: float
    # How much less similar the closest line under the declared code is than the closest line of all
    # (0 where the closest line of all is under it; None where its lines were not searched).
    similarity_gap: float | None = None
    closest_line: Evidence | None = None  # the closest knowledge line under the declared code

    @property
    def declared_is_best(self) -> bool:
        return self.declared == self.best

    def to_json(self) -> dict:
        return {"level": self.level, "declared": self.declared, "declared_share": round(self.declared_share, 4),
                "best": self.best, "best_share": round(self.best_share, 4),
                "similarity_gap": None if self.similarity_gap is None else round(self.similarity_gap, 4),
                "closest_line": None if self.closest_line is None else self.closest_line.to_json()}


@dataclass(frozen=True)
class Recommendation:
    code: str  # "" when there is no evidence at all
    level: int  # digits of `code`: 2, 4 or 6 (0 without evidence)
    confidence: float  # 0..1
    margin: float  # share of the best minus the second-best candidate at `level`
    alternatives: tuple[Candidate, ...]  # the best candidates at `level`, best first
    by_level: dict[int, tuple[Candidate, ...]] = field(default_factory=dict)  # best candidates at 2, 4, 6 digits
    # The code chosen at each level, top-down (chapter, heading in it, subheading in that), however confident.
    path: tuple[str, ...] = ()
    best_similarity: float | None = None
    evidence: tuple[Evidence, ...] = ()
    declared_code: str | None = None
    declared_share: float | None = None  # the vote share of the declared code at the deepest level it has
    # The declared code's support at each level it reaches (chapter, heading, subheading), top level first.
    declared_support: tuple[LevelSupport, ...] = ()

    def support_at(self, level: int) -> LevelSupport | None:
        return next((support for support in self.declared_support if support.level == level), None)

    def to_json(self) -> dict:
        return {
            "code": self.code, "level": self.level, "confidence": round(self.confidence, 4),
            "margin": round(self.margin, 4),
            "alternatives": [candidate.to_json() for candidate in self.alternatives],
            "path": list(self.path),
            "by_level": {str(level): [c.to_json() for c in candidates] for level, candidates in self.by_level.items()},
            "best_similarity": None if self.best_similarity is None else round(self.best_similarity, 4),
            "evidence": [evidence.to_json() for evidence in self.evidence],
            "declared_code": self.declared_code,
            "declared_share": None if self.declared_share is None else round(self.declared_share, 4),
            "declared_support": [support.to_json() for support in self.declared_support],
        }


def find_evidence(
    descriptions: list[str], *, k: int = DEFAULT_K, declared_codes: list[str] | None = None,
) -> list[list[Evidence]]:
    """The nearest knowledge-base evidence for each (normalised) description, best first.

    One embedding call and one nearest-neighbour query for the whole batch, then one
    query for the entries' codes and texts. Each list ends with the description's best
    chapter and heading prototypes (source PROTOTYPE_SOURCE, entry_id 0) and, where a
    declared code is given (check mode), the closest line under that code at each level
    (source DECLARED_SOURCE + level).
    """
    if not descriptions:
        return []
    space = active_space()
    vectors = embed_queries(list(descriptions), task="hs_code", space=space)
    neighbour_lists = nearest_neighbours(
        # The HNSW candidate list (settings.HS_SEARCH_EF): the search is most of the pipeline's time.
        space=space, corpus=KNOWLEDGE_CORPORA, vectors=vectors, k=k, ef_search=settings.HS_SEARCH_EF,
    )
    entries = _entries_by_id({neighbour.object_id for neighbours in neighbour_lists for neighbour in neighbours})
    evidence_lists = []
    for neighbours, prototypes in zip(neighbour_lists, prototype_similarities(space=space, vectors=vectors)):
        evidence = []
        for neighbour in neighbours:
            entry = entries.get(neighbour.object_id)
            if entry is not None:  # an entry deleted since it was indexed is no evidence
                code, source, language, text = entry
                evidence.append(Evidence(neighbour.object_id, code, source, language, neighbour.score, text))
        line_codes = [item.code for item in evidence]
        for level in sorted(prototypes):
            voted = {code[:level] for code in line_codes if len(code) >= level}
            evidence.extend(Evidence(0, code, PROTOTYPE_SOURCE, "", score, "")
                            for code, score in _prototypes_that_count(prototypes[level], voted))
        evidence_lists.append(evidence)
    if declared_codes is not None:
        for evidence, declared in zip(evidence_lists, declared_evidence(space=space, vectors=vectors,
                                                                        declared_codes=declared_codes,
                                                                        neighbours=evidence_lists)):
            evidence.extend(declared)
    return evidence_lists


# The best prototypes kept as evidence at each level whatever the lines say: the vote's candidates
# (PROTOTYPE_CANDIDATES) and what a verdict's explanation shows after the lines (pipeline.EVIDENCE_KEPT).
PROTOTYPES_ALWAYS_KEPT = 10


def _prototypes_that_count(ranked: list[tuple[str, float]], voted: set[str]):
    """Of a level's prototypes (best first), those the vote reads: the best PROTOTYPES_ALWAYS_KEPT, those of
    the codes the lines vote for at that level (`voted`), and the last (its score stands for every code not
    kept). Half of them or fewer: the rest changed no vote, and building them cost about a tenth of the
    pipeline's own time."""
    last = len(ranked) - 1
    return [(code, score) for rank, (code, score) in enumerate(ranked)
            if rank < PROTOTYPES_ALWAYS_KEPT or rank == last or code in voted]


def declared_evidence(
    *, space, vectors: np.ndarray, declared_codes: list[str], neighbours: list[list[Evidence]] | None = None,
) -> list[list[Evidence]]:
    """For each query vector, the closest knowledge line under its declared code at 2, 4 and 6 digits.

    The nearest-neighbour search may not reach the declared code's lines at all (a wrong code's lines
    are far away), so the nomenclature lines of the declared chapters are scanned exactly: read once per
    batch and compared in numpy, chapter by chapter. Approved references under the declared code count
    where they are among the item's nearest neighbours: scanning every reference of a chapter would
    grow with the knowledge base (100,000 references are ~1,000 per chapter), the nomenclature does not.
    """
    results: list[list[Evidence]] = [[] for _ in declared_codes]
    by_chapter: dict[str, list[int]] = defaultdict(list)
    for position, code in enumerate(declared_codes):
        if code and len(code) >= 2:
            by_chapter[code[:2]].append(position)
    if not by_chapter:
        return results
    winners: dict[tuple[int, int], tuple[int, float]] = {}
    for position, found in enumerate(neighbours or []):
        declared = declared_codes[position]
        for item in found:
            if item.source == PROTOTYPE_SOURCE or not declared:
                continue
            for level in LEVELS:
                if len(declared) >= level and item.code.startswith(declared[:level]):
                    if (position, level) not in winners or item.score > winners[(position, level)][1]:
                        winners[(position, level)] = (item.entry_id, item.score)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, hs_code FROM verifier_knowledgeentry WHERE chapter = ANY(%s) AND source = %s",
                       [list(by_chapter), KnowledgeEntry.Source.NOMENCLATURE])
        code_of = dict(cursor.fetchall())
    entry_ids, matrix = stored_vectors(space=space, corpus=KNOWLEDGE_CORPORA, object_ids=list(code_of))
    line_codes = np.array([code_of[entry_id] for entry_id in entry_ids])
    # Rounded as the index stores and compares them (halfvec), so that a line's score here equals its score there.
    queries = np.asarray(vectors, dtype=np.float32).astype(np.float16).astype(np.float32)
    for chapter, positions in by_chapter.items():
        in_chapter = np.flatnonzero(np.char.startswith(line_codes, chapter)) if entry_ids else np.array([], dtype=int)
        if not len(in_chapter):
            continue
        scores = queries[positions] @ matrix[in_chapter].T
        chapter_codes = line_codes[in_chapter]
        for row, position in enumerate(positions):
            declared = declared_codes[position]
            for level in LEVELS:
                if len(declared) < level:
                    break
                under = np.flatnonzero(np.char.startswith(chapter_codes, declared[:level]))
                if not len(under):
                    break
                best = under[np.argmax(scores[row, under])]
                score = float(scores[row, best])
                if (position, level) not in winners or score > winners[(position, level)][1]:
                    winners[(position, level)] = (entry_ids[in_chapter[best]], score)
    entries = _entries_by_id({entry_id for entry_id, _ in winners.values()})
    for (position, level), (entry_id, score) in sorted(winners.items()):
        if entry_id not in entries:  # deleted since it was indexed
            continue
        code, source, language, text = entries[entry_id]
        results[position].append(Evidence(entry_id=entry_id, code=code, source=f"{DECLARED_SOURCE}{level}",
                                          language=language, score=score, text=text))
    return results


def _entries_by_id(entry_ids: set[int]) -> dict[int, tuple[str, str, str, str]]:
    """(code, source, language, display text) of each knowledge entry: one query with one array parameter.

    Plain tuples, not model instances: a chunk's evidence names some ten thousand entries.
    """
    if not entry_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, hs_code, source, language, display_text FROM verifier_knowledgeentry WHERE id = ANY(%s)",
            [list(entry_ids)],
        )
        return {entry_id: (code, source, language, text)
                for entry_id, code, source, language, text in cursor.fetchall()}


def recommend_hs_code(
    evidence: list[Evidence], *, declared_code: str | None = None, temperature: float = VOTE_TEMPERATURE,
    pooling: str = DEFAULT_POOLING, prototype_weight: float = PROTOTYPE_WEIGHT,
) -> Recommendation:
    """A similarity-weighted vote over the evidence, aggregated 6 -> 4 -> 2 digits; pure (no database).

    1. Weigh each piece of evidence by how close it is to the best match.
    2. Pool the weights per code prefix at 2, 4 and 6 digits (best evidence, or the sum).
    3. Mix in the prototypes' opinion at the levels they cover.
    4. Choose top-down: the best chapter, the best heading in it, the best subheading in that.
    5. Recommend at the deepest level whose chosen code holds a confident share of its level's vote.
    """
    prototypes = [item for item in evidence if item.source == PROTOTYPE_SOURCE]
    declared_lines = {int(item.source[len(DECLARED_SOURCE):]): item for item in evidence
                      if item.source.startswith(DECLARED_SOURCE)}
    evidence = [item for item in evidence
                if item.source != PROTOTYPE_SOURCE and not item.source.startswith(DECLARED_SOURCE)]
    if not evidence:
        return Recommendation(code="", level=0, confidence=0.0, margin=0.0, alternatives=(),
                              declared_code=declared_code)
    best_score = max(item.score for item in evidence)
    votes: dict[int, dict[str, float]] = {
        level: defaultdict(float, pooled_votes(((item.code[:level], item.score) for item in evidence
                                                if len(item.code) >= level),
                                               temperature=temperature, pooling=pooling, best=best_score))
        for level in LEVELS
    }
    if prototypes and prototype_weight > 0:
        _mix_prototypes(votes, prototypes, weight=prototype_weight)

    by_level: dict[int, tuple[Candidate, ...]] = {}
    chosen: dict[int, str] = {}
    parent = ""
    for level in LEVELS:
        total = sum(votes[level].values())
        if total <= 0:
            break
        ranked = sorted(votes[level].items(), key=lambda pair: (-pair[1], pair[0]))
        by_level[level] = tuple(Candidate(code, weight / total) for code, weight in ranked[:ALTERNATIVES_KEPT])
        within_parent = [code for code, _ in ranked if code.startswith(parent)]
        if not within_parent:
            break
        chosen[level] = parent = within_parent[0]
    if not chosen:  # no evidence code reaches a chapter (all shorter than two digits): nothing to recommend
        return Recommendation(code="", level=0, confidence=0.0, margin=0.0, alternatives=(),
                              declared_code=declared_code)

    level = max((lvl for lvl in chosen if _share(votes[lvl], chosen[lvl]) > CONFIDENT_SHARE[lvl]), default=min(chosen))
    code = chosen[level]
    total = sum(votes[level].values())
    share = votes[level][code] / total
    runner_up = max((weight for other, weight in votes[level].items() if other != code), default=0.0) / total
    declared_support = _declared_support(votes, declared_code or "", declared_lines=declared_lines,
                                         best_score=best_score)
    declared_share = declared_support[-1].declared_share if declared_support else None
    return Recommendation(
        code=code, level=level, confidence=_confidence(share=share, chosen=chosen, votes=votes, level=level),
        margin=share - runner_up, alternatives=by_level[level], by_level=by_level,
        path=tuple(chosen[lvl] for lvl in LEVELS if lvl in chosen), best_similarity=best_score,
        evidence=tuple(sorted(evidence, key=lambda item: -item.score)), declared_code=declared_code,
        declared_share=declared_share, declared_support=declared_support,
    )


def _declared_support(
    votes: dict[int, dict[str, float]], declared_code: str, *, declared_lines: dict[int, Evidence], best_score: float,
) -> tuple[LevelSupport, ...]:
    """The declared code's share of the vote at each level it reaches, beside each level's best code, and how
    far its own closest line is from the closest line of all (when its lines were searched).

    A national line (8 or 10 digits) is judged at 6 digits: the evidence stops there.
    """
    supports = []
    for level in LEVELS:
        total = sum(votes[level].values())
        if len(declared_code) < level or total <= 0:
            break
        best, best_weight = min(votes[level].items(), key=lambda pair: (-pair[1], pair[0]))
        declared = declared_code[:level]
        line = declared_lines.get(level)
        if declared_lines:
            # No line under the declared code at all is the widest gap there is.
            gap = 2.0 if line is None else max(0.0, best_score - line.score)
        else:
            gap = None
        supports.append(LevelSupport(level=level, declared=declared,
                                     declared_share=votes[level].get(declared, 0.0) / total, best=best,
                                     best_share=best_weight / total, similarity_gap=gap, closest_line=line))
    return tuple(supports)


def _mix_prototypes(votes: dict[int, dict[str, float]], prototypes: list[Evidence], *, weight: float) -> None:
    """Mix each level's line votes with the prototypes' cosines (a weighted geometric mean), in place."""
    by_level: dict[int, dict[str, float]] = defaultdict(dict)
    for item in prototypes:
        by_level[len(item.code)][item.code] = item.score
    for level, scores in by_level.items():
        if level not in votes:
            continue
        best, floor = max(scores.values()), min(scores.values())
        for code in set(votes[level]) | set(heapq.nlargest(PROTOTYPE_CANDIDATES, scores, key=scores.__getitem__)):
            line_vote = votes[level].get(code, 0.0) or NO_LINE_VOTE
            closeness = math.exp((scores.get(code, floor) - best) / PROTOTYPE_TEMPERATURE)
            votes[level][code] = line_vote ** (1 - weight) * closeness ** weight


def _share(level_votes: dict[str, float], code: str) -> float:
    total = sum(level_votes.values())
    return level_votes.get(code, 0.0) / total if total else 0.0


def _confidence(*, share: float, chosen: dict[int, str], votes: dict[int, dict[str, float]], level: int) -> float:
    """The chosen code's vote share, tempered by its ancestors' shares (a heading in a disputed chapter is shaky)."""
    confidence = share
    for ancestor_level in LEVELS:
        if ancestor_level >= level or ancestor_level not in chosen:
            continue
        total = sum(votes[ancestor_level].values())
        confidence = min(confidence, votes[ancestor_level][chosen[ancestor_level]] / total)
    return max(0.0, min(1.0, confidence))
