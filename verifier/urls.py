from django.urls import path

from . import api, views

app_name = "verifier"

urlpatterns = [
    path("declarations/upload/", views.upload, name="upload"),
    path("declarations/batches/<int:batch_id>/", views.batch_detail, name="batch-detail"),
    path("declarations/batches/<int:batch_id>/status.json", views.batch_status, name="batch-status"),
    path("declarations/batches/<int:batch_id>/errors.csv", views.batch_errors_csv, name="batch-errors"),
    path("declarations/items/<int:item_id>/", views.item_detail, name="item-detail"),
    path("api/declarations/batches", api.BatchListView.as_view(), name="api-batches"),
    path("api/declarations/batches/<int:batch_id>", api.BatchDetailView.as_view(), name="api-batch"),
    path("api/declarations/batches/<int:batch_id>/items", api.BatchItemsView.as_view(), name="api-batch-items"),
]
