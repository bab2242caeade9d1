from django.apps import AppConfig


class VerifierConfig(AppConfig):
    name = "verifier"
    verbose_name = "Declaration verification"

    def ready(self) -> None:
        from functools import partial

        from embeddings.corpora import Corpus, register_corpus

        from .models import KNOWLEDGE_CORPUS, KNOWLEDGE_CORPUS_CJK
        from .selectors import knowledge_texts_after

        register_corpus(Corpus(name=KNOWLEDGE_CORPUS, fetch_texts=partial(knowledge_texts_after, cjk=False)))
        register_corpus(Corpus(name=KNOWLEDGE_CORPUS_CJK, fetch_texts=partial(knowledge_texts_after, cjk=True)))
