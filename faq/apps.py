from django.apps import AppConfig


class FaqConfig(AppConfig):
    name = "faq"
    verbose_name = "FAQ matching"

    def ready(self) -> None:
        from embeddings.models import LanguageMean

        from .embedding_registration import register_with_embeddings
        from .models import CalibratedThreshold, FaqClassifier
        from .selectors import match_context, recent_thresholds

        register_with_embeddings()
        # A match re-reads what it remembers at once after a change made in this process (or a flush in tests).
        match_context.forget_when_changed(LanguageMean, FaqClassifier, name="faq.match_context")
        recent_thresholds.forget_when_changed(CalibratedThreshold, name="faq.thresholds")
