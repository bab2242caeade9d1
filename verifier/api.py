"""JSON API: submit declaration items in batches, read a batch's progress and its items' verdicts."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.permissions import api_permission

from .models import DeclarationBatch, Verdict
from .selectors import batch_items, batch_progress, batch_row_errors
from .serializers import BatchProgressSerializer, ItemSerializer, SubmitItemsRequest, SubmitItemsResponse
from .services import create_batch, import_declaration_objects

ROW_ERRORS_RETURNED = 100


def readable_batch(request: Request, batch_id: int) -> DeclarationBatch:
    """A batch the caller submitted, or any batch for those allowed to view batches (staff, reviewers)."""
    batch = get_object_or_404(DeclarationBatch, pk=batch_id)
    if batch.created_by_id != request.user.pk and not request.user.has_perm("verifier.view_declarationbatch"):
        raise PermissionDenied("this batch was submitted by someone else")
    return batch


class BatchListView(APIView):
    permission_classes = [api_permission("verifier.add_declarationbatch")]

    @extend_schema(request=SubmitItemsRequest, responses={201: SubmitItemsResponse},
                   summary="Submit declaration items; they are verified in the background")
    def post(self, request: Request) -> Response:
        payload = SubmitItemsRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        batch = create_batch(source=DeclarationBatch.Source.API, mode=payload.validated_data["mode"],
                             created_by=request.user)
        import_declaration_objects(batch=batch, objects=payload.validated_data["items"])
        batch.refresh_from_db()
        body = batch_progress(batch=batch).as_json()
        body["row_errors"] = list(batch_row_errors(batch=batch).values("row_number", "reason")[:ROW_ERRORS_RETURNED])
        return Response(body, status=status.HTTP_201_CREATED)


class BatchDetailView(APIView):
    @extend_schema(responses={200: BatchProgressSerializer}, summary="A batch's progress and counts by tier")
    def get(self, request: Request, batch_id: int) -> Response:
        return Response(batch_progress(batch=readable_batch(request, batch_id)).as_json())


class BatchItemsView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("tier", str, enum=Verdict.Tier.values, required=False),
                    OpenApiParameter("limit", int, required=False), OpenApiParameter("offset", int, required=False)],
        responses={200: ItemSerializer(many=True)}, summary="A batch's items with their verdicts, in order",
    )
    def get(self, request: Request, batch_id: int) -> Response:
        items = batch_items(batch=readable_batch(request, batch_id))
        tier = request.query_params.get("tier")
        if tier:
            if tier not in Verdict.Tier.values:
                return Response({"tier": [f"must be one of {', '.join(Verdict.Tier.values)}"]}, status=400)
            items = items.filter(verdict__tier=tier)
        paginator = LimitOffsetPagination()
        paginator.default_limit, paginator.max_limit = 100, 1000
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(ItemSerializer(page, many=True).data)
