from __future__ import annotations

from rest_framework import serializers

from .models import DeclarationBatch, DeclarationItem

MAX_ITEMS_PER_REQUEST = 10_000


class SubmitItemsRequest(serializers.Serializer):
    mode = serializers.ChoiceField(choices=DeclarationBatch.Mode.choices, default=DeclarationBatch.Mode.CHECK)
    items = serializers.ListField(
        child=serializers.DictField(), min_length=1, max_length=MAX_ITEMS_PER_REQUEST,
        help_text="objects with `description` (required) and optional id, item_no, product_name, spec, hs_code, "
                  "origin, quantity, unit, value, currency, language; other keys are kept",
    )


class RowErrorSerializer(serializers.Serializer):
    row_number = serializers.IntegerField(help_text="1-based position in `items`")
    reason = serializers.CharField()


class BatchProgressSerializer(serializers.Serializer):
    batch = serializers.IntegerField()
    status = serializers.CharField()
    mode = serializers.CharField()
    rows_read = serializers.IntegerField()
    items_created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rows_rejected = serializers.IntegerField()
    items_by_status = serializers.DictField(child=serializers.IntegerField())
    items_by_tier = serializers.DictField(child=serializers.IntegerField())
    items_done = serializers.IntegerField()
    fraction_done = serializers.FloatField()
    failure_reason = serializers.CharField()


class SubmitItemsResponse(BatchProgressSerializer):
    row_errors = RowErrorSerializer(many=True)


class AnomalySerializer(serializers.Serializer):
    code = serializers.CharField()
    reason = serializers.CharField()


class VerdictSerializer(serializers.Serializer):
    tier = serializers.CharField()
    recommended_code = serializers.CharField()
    recommended_level = serializers.IntegerField(allow_null=True)
    final_code = serializers.CharField()
    confidence = serializers.FloatField()
    margin = serializers.FloatField()
    best_similarity = serializers.FloatField(allow_null=True)
    anomalies = AnomalySerializer(many=True)
    evidence = serializers.JSONField(help_text="neighbours (entry_id, code, source, score, text) and alternatives")
    reviewed = serializers.BooleanField()


class ItemSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="external_id")
    item_id = serializers.IntegerField(source="pk")
    description = serializers.CharField(source="description_raw")
    hs_code = serializers.CharField(source="declared_code")
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = DeclarationItem
        fields = ["item_id", "id", "item_no", "product_name", "spec", "description", "hs_code", "origin", "quantity",
                  "unit", "value", "currency", "language", "extra", "status", "verdict"]

    def get_verdict(self, item: DeclarationItem) -> dict | None:
        verdict = getattr(item, "verdict", None)
        return VerdictSerializer(verdict).data if verdict is not None else None
