"""The corpora whose texts are embedded as documents, registered by the apps that own them.

The re-indexer walks every registered corpus to build a new embedding space and
to re-embed objects whose text changed or that are missing from the active space.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Corpus:
    name: str
    # fetch_texts(after_id, limit): (object_id, text) of live objects with id > after_id, ordered by id.
    fetch_texts: Callable[[int, int], list[tuple[int, str]]]


_registry: dict[str, Corpus] = {}


def register_corpus(corpus: Corpus) -> None:
    _registry[corpus.name] = corpus


def registered_corpora() -> list[Corpus]:
    return list(_registry.values())


def get_corpus(name: str) -> Corpus:
    try:
        return _registry[name]
    except KeyError:
        raise KeyError(f"corpus {name!r} is not registered; known: {sorted(_registry)}") from None


def unregister_corpus(name: str) -> None:
    _registry.pop(name, None)
