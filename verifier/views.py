"""Staff pages: upload with progress, batch summary, item detail, row errors as CSV."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from config.csv_export import csv_download
from config.permissions import staff_permission_required

from .forms import UploadForm
from .models import DeclarationBatch, DeclarationItem
from .presentation import item_screen
from .selectors import batch_items, batch_progress, batch_row_errors, confidence_histogram
from .services import accept_upload

ITEMS_PER_PAGE = 100


@staff_permission_required("verifier.add_declarationbatch")
@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data["reference"] and not request.user.has_perm("verifier.upload_reference_batch"):
            raise PermissionDenied("reference batches join the knowledge base: they need upload_reference_batch")
        batch = accept_upload(uploaded_file=form.cleaned_data["file"], mode=form.cleaned_data["mode"],
                              is_reference=form.cleaned_data["reference"], created_by=request.user)
        return redirect("verifier:batch-detail", batch_id=batch.pk)
    recent = DeclarationBatch.objects.order_by("-id")
    if not request.user.has_perm("verifier.view_declarationbatch"):
        recent = recent.filter(created_by=request.user)
    recent = recent[:20]
    return render(request, "verifier/upload.html", {"form": form, "recent": recent})


@staff_permission_required("verifier.view_declarationbatch")
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


@staff_permission_required("verifier.view_declarationbatch")
def batch_status(request: HttpRequest, batch_id: int) -> JsonResponse:
    """What the batch page polls while the file is imported and verified."""
    batch = get_object_or_404(DeclarationBatch, pk=batch_id)
    return JsonResponse(batch_progress(batch=batch).as_json())


@staff_permission_required("verifier.view_declarationbatch", "verifier.view_importrowerror")
def batch_errors_csv(request: HttpRequest, batch_id: int) -> StreamingHttpResponse:
    """Every rejected row of a batch: row number, reason, and the row as it was read (spreadsheet-safe)."""
    batch = get_object_or_404(DeclarationBatch, pk=batch_id)
    rows = batch_row_errors(batch=batch).values_list("row_number", "reason", "raw").iterator(chunk_size=2000)
    return csv_download(header=("row_number", "reason", "raw"), rows=rows, file_name=f"batch-{batch.pk}-errors.csv")


@staff_permission_required("verifier.view_declarationitem")
def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    item = get_object_or_404(DeclarationItem.objects.select_related("batch", "verdict"), pk=item_id)
    return render(request, "verifier/item.html", {
        "item": item, "screen": item_screen(item=item),
        "reviews": item.reviews.select_related("reviewer").order_by("created_at"),
    })
