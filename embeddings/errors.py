"""Exceptions of the embedding gateway. Callers catch EmbeddingError and leave their items pending."""


class EmbeddingError(Exception):
    """Embedding failed; nothing was stored. Safe to retry later."""


class EmbeddingUnavailable(EmbeddingError):
    """The endpoint could not be reached, timed out, or kept answering 429/5xx after retries."""


class CircuitOpen(EmbeddingUnavailable):
    """Recent calls failed; calls are refused for a cool-down instead of hammering a dead endpoint."""


class InvalidEmbeddingResponse(EmbeddingError):
    """The endpoint answered, but with something that is not one finite, non-zero vector per input."""


class EmbeddingRequestRejected(EmbeddingError):
    """The endpoint refused the request (4xx other than 429); retrying the same request will not help."""


class DimensionMismatch(EmbeddingError):
    """The endpoint serves vectors of another dimension than the active embedding space."""
