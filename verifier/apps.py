from django.apps import AppConfig


class VerifierConfig(AppConfig):
    name = "verifier"
    verbose_name = "Declaration verification"

    def ready(self) -> None:
        from .embedding_registration import register_with_embeddings

        register_with_embeddings()
