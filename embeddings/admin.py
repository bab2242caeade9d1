"""Admin: embedding spaces and their build progress, read-only (vectors are never shown or edited)."""
from django.contrib import admin

from .models import EmbeddingSpace, SpaceBuildProgress


class SpaceBuildProgressInline(admin.TabularInline):
    model = SpaceBuildProgress
    fields = ("corpus", "last_object_id", "objects_seen", "objects_embedded", "finished_at", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(EmbeddingSpace)
class EmbeddingSpaceAdmin(admin.ModelAdmin):
    list_display = ("id", "model_name", "dimensions", "prompt_version", "state", "activated_at", "retired_at")
    list_filter = ("state",)
    readonly_fields = ("model_name", "dimensions", "prompt_version", "state", "endpoint_url", "created_at",
                       "activated_at", "retired_at")
    inlines = [SpaceBuildProgressInline]

    # Spaces change only through the re-indexing services (reindex_embeddings), never by hand.
    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
