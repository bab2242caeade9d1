from django.apps import AppConfig


class FaqConfig(AppConfig):
    name = "faq"
    verbose_name = "FAQ matching"

    def ready(self) -> None:
        from embeddings.corpora import Corpus, register_corpus

        from .selectors import LIVE_CORPUS

        register_corpus(Corpus(name=LIVE_CORPUS, fetch_texts=fetch_live_wordings,
                               prepare_vectors=centre_live_wordings))


def centre_live_wordings(space, wording_ids: list[int], vectors):
    """Live wording vectors are stored centred per language (faq.services.recentre_library)."""
    from .models import LIVE_NAMESPACE
    from .services import centred_wording_vectors

    return centred_wording_vectors(space, wording_ids, vectors, namespace=LIVE_NAMESPACE)


def fetch_live_wordings(after_id: int, limit: int) -> list[tuple[int, str]]:
    """Every wording of an active live FAQ (its question included) is one document of the corpus."""
    from .models import LIVE_NAMESPACE, FaqWording

    return list(
        FaqWording.objects.filter(id__gt=after_id, faq__namespace=LIVE_NAMESPACE, faq__active=True)
        .order_by("id").values_list("id", "text")[:limit]
    )
