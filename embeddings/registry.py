"""What the apps tell the embedding layer at start-up (in their AppConfig.ready): tasks, thresholds, golden texts.

The embedding layer knows no domain. An app that searches registers the task its queries
serve (the instruction instruction-following models read, and the reranker's), the default
similarity thresholds of its decisions per model family (similarity scales differ by model:
e5 cosines sit between ~0.75 and ~0.95 even for unrelated texts), and golden texts whose
nearest neighbours any working model finds (`embedding_health --golden`). Corpora are
registered in embeddings.corpora.
"""
from __future__ import annotations

from dataclasses import dataclass

# The one task the layer itself knows: a query with no task is a plain text to compare.
PAIR_TASK = "pair"
PAIR_INSTRUCTION = "Retrieve semantically similar text"


@dataclass(frozen=True)
class Task:
    name: str
    # Written into the query text for instruction-following models (Qwen3); in English even for Chinese
    # text (reported 1-5% gain for Qwen3). Changing it changes every query vector: bump the prompt version.
    instruction: str
    # What a reranker is asked to judge for this task ("" when the task is never reranked).
    rerank_instruction: str = ""


@dataclass(frozen=True)
class GoldenSet:
    """Queries and the one document each must find nearest among `documents` (any working model ranks these)."""
    task: str
    queries: dict[str, str]
    documents: tuple[str, ...]


_tasks: dict[str, Task] = {PAIR_TASK: Task(name=PAIR_TASK, instruction=PAIR_INSTRUCTION)}
_thresholds: dict[str, dict[str, float]] = {}
_golden_sets: list[GoldenSet] = []


def register_task(task: Task) -> None:
    _tasks[task.name] = task


def get_task(name: str) -> Task:
    try:
        return _tasks[name]
    except KeyError:
        raise ValueError(f"unknown embedding task {name!r}; known: {sorted(_tasks)}") from None


def register_default_thresholds(*, model_family: str, thresholds: dict[str, float]) -> None:
    """Default thresholds of one model family (a ModelProfile's `family`), used until a space is calibrated."""
    _thresholds.setdefault(model_family, {}).update(thresholds)


def default_thresholds(model_family: str) -> dict[str, float]:
    return dict(_thresholds.get(model_family, {}))


def register_golden_set(golden_set: GoldenSet) -> None:
    if golden_set not in _golden_sets:
        _golden_sets.append(golden_set)


def golden_sets() -> list[GoldenSet]:
    return list(_golden_sets)
