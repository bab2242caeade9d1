"""The similarity vote shared by HS recommendation and FAQ matching: each scored candidate votes for its key
with weight exp((score - best) / temperature), so the best counts 1 and one temperature below counts 1/e.

With e5's compressed cosines the temperature is small (0.01-0.02): a neighbour a little further away
counts much less, and many mediocre neighbours cannot outvote one close one.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def pooled_votes(
    scored: Iterable[tuple[Key, float]], *, temperature: float, pooling: str = "sum", best: float | None = None,
) -> dict[Key, float]:
    """{key: its vote} over (key, score) pairs: the sum of its weights, or with pooling="max" its best weight.

    `best`: the score that weighs 1 (by default the highest here; a caller voting at several levels passes
    one best for all). Votes are not normalised: shares are a vote over the sum of all votes.
    """
    scored = list(scored)
    if not scored:
        return {}
    if best is None:
        best = max(score for _, score in scored)
    if pooling == "max":
        # exp is increasing: a key's best weight is the weight of its best score, one exp per key.
        best_scores: dict[Key, float] = {}
        for key, score in scored:
            if key not in best_scores or score > best_scores[key]:
                best_scores[key] = score
        return {key: math.exp((score - best) / temperature) for key, score in best_scores.items()}
    votes: dict[Key, float] = defaultdict(float)
    for key, score in scored:
        votes[key] += math.exp((score - best) / temperature)
    return dict(votes)
