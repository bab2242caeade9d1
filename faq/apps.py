from django.apps import AppConfig


class FaqConfig(AppConfig):
    name = "faq"
    verbose_name = "FAQ matching"

    def ready(self) -> None:
        from .embedding_registration import register_with_embeddings

        register_with_embeddings()
