"""The corpora whose texts are embedded as documents, registered by the apps that own them.

The re-indexer walks every registered corpus to build a new embedding space and
to re-embed objects whose text changed or that are missing from the active space.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Corpus:
    name: str
    # fetch_texts(after_id, limit): (object_id, text) of live objects with id > after_id, ordered by id.
    fetch_texts: Callable[[int, int], list[tuple[int, str]]]
    # prepare_vectors(space, object_ids, vectors): what is stored instead of the raw document vectors
    # (per-language centred ones, say); every writer of the corpus applies it. None: store them raw.
    prepare_vectors: Callable | None = None


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


def vectors_to_store(space, corpus: str, object_ids: Sequence[int], vectors):
    """The vectors to store for these objects of `corpus`: its prepare_vectors applied where it has one."""
    registered = _registry.get(corpus)
    if registered is None or registered.prepare_vectors is None or len(object_ids) == 0:
        return vectors
    return registered.prepare_vectors(space, list(object_ids), vectors)


def unregister_corpus(name: str) -> None:
    _registry.pop(name, None)
