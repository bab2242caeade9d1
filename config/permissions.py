"""Access to staff pages and APIs by permission, so that each role (a group) gets exactly its rights.

The groups and their permissions are created by verifier migration 0008 (see README "Roles"). Pages keep
sending a visitor who is not logged in as staff to the admin login; a logged-in staff member without the
permission gets 403, not a login loop.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission


def staff_permission_required(*permissions: str) -> Callable:
    """A staff page open to staff holding every one of `permissions` (app_label.codename)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.has_perms(permissions):
                raise PermissionDenied(f"this page needs the permission {', '.join(permissions)}")
            return view(request, *args, **kwargs)

        return staff_member_required(guarded)

    return decorate


def api_permission(*permissions: str) -> type[BasePermission]:
    """A DRF permission class: an authenticated caller holding every one of `permissions`."""

    class HasPermissions(BasePermission):
        message = f"this call needs the permission {', '.join(permissions)}"

        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(permissions))

    name = "Has_" + "_and_".join(permission.replace(".", "_") for permission in permissions)
    HasPermissions.__name__ = HasPermissions.__qualname__ = name
    return HasPermissions
