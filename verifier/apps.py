from django.apps import AppConfig


class VerifierConfig(AppConfig):
    name = "verifier"
    verbose_name = "Declaration verification"

    def ready(self) -> None:
        from embeddings.corpora import Corpus, register_corpus

        from .models import KNOWLEDGE_CORPUS
        from .selectors import knowledge_texts_after

        register_corpus(Corpus(name=KNOWLEDGE_CORPUS, fetch_texts=knowledge_texts_after))
