"""Staff pages: upload with progress, batch summary, item detail, row errors as CSV."""
from __future__ import annotations

import csv
import itertools

from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from .forms import UploadForm
from .models import DeclarationBatch, DeclarationItem
from .selectors import batch_items, batch_progress, batch_row_errors, code_descriptions, confidence_histogram
from .services import accept_upload

ITEMS_PER_PAGE = 100


@staff_member_required
@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        batch = accept_upload(uploaded_file=form.cleaned_data["file"], mode=form.cleaned_data["mode"],
                              is_reference=form.cleaned_data["reference"], created_by=request.user)
        return redirect("verifier:batch-detail", batch_id=batch.pk)
    recent = DeclarationBatch.objects.order_by("-id")[:20]
    return render(request, "verifier/upload.html", {"form": form, "recent": recent})


@staff_member_required
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(DeclarationBatch, pk=batch_id)
    progress = batch_progress(batch=batch)
    histogram = confidence_histogram(batch=batch)
    tallest = max((bucket["count"] for bucket in histogram), default=0) or 1
    bars = []
    for index, bucket in enumerate(histogram):
        height = round(100 * bucket["count"] / tallest)
        bars.append({**bucket, "height": height, "x": index * 30, "y": 110 - height})
    page = Paginator(batch_items(batch=batch), ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "verifier/batch.html", {
        "batch": batch, "progress": progress, "bars": bars, "page": page,
        "row_errors": batch_row_errors(batch=batch)[:20],
    })


@staff_member_required
def batch_status(request: HttpRequest, batch_id: int) -> JsonResponse:
    """What the batch page polls while the file is imported and verified."""
    batch = get_object_or_404(DeclarationBatch, pk=batch_id)
    return JsonResponse(batch_progress(batch=batch).as_json())


class _Echo:
    def write(self, value: str) -> str:
        return value


@staff_member_required
def batch_errors_csv(request: HttpRequest, batch_id: int) -> StreamingHttpResponse:
    """Every rejected row of a batch: row number, reason, and the row as it was read."""
    batch = get_object_or_404(DeclarationBatch, pk=batch_id)
    writer = csv.writer(_Echo())
    rows = batch_row_errors(batch=batch).values_list("row_number", "reason", "raw").iterator(chunk_size=2000)
    header = [writer.writerow(("row_number", "reason", "raw"))]
    response = StreamingHttpResponse(
        itertools.chain(header, (writer.writerow(row) for row in rows)), content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-errors.csv"'
    return response


@staff_member_required
def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    item = get_object_or_404(DeclarationItem.objects.select_related("batch", "verdict"), pk=item_id)
    verdict = getattr(item, "verdict", None)
    codes = [code for code in (item.declared_code, verdict.recommended_code if verdict else "") if code]
    return render(request, "verifier/item.html", {
        "item": item, "verdict": verdict, "code_texts": code_descriptions(codes),
        "neighbours": (verdict.evidence or {}).get("neighbours", []) if verdict else [],
        "reviews": item.reviews.select_related("reviewer").order_by("created_at"),
    })
