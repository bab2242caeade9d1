from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


class FaqConfig(AppConfig):
    name = "faq"
    verbose_name = "FAQ matching"

    def ready(self) -> None:
        from embeddings.models import LanguageMean

        from .embedding_registration import register_with_embeddings
        from .models import FaqClassifier
        from .selectors import forget_match_context, match_context_changed

        register_with_embeddings()
        # A match re-reads what it remembers at once after a change made in this process (or a flush in tests).
        for model in (LanguageMean, FaqClassifier):
            post_save.connect(match_context_changed, sender=model, dispatch_uid=f"faq.match_context.{model.__name__}")
            post_delete.connect(match_context_changed, sender=model,
                                dispatch_uid=f"faq.match_context.{model.__name__}.deleted")
        post_migrate.connect(forget_match_context, dispatch_uid="faq.match_context.flushed")
