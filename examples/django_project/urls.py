from __future__ import annotations

from django.urls import include, path

from . import views

api = [
    path("users/<int:uid>", views.get_user),
    path("orders/<int:oid>", views.get_order),
]

urlpatterns = [
    path("v1/", include(api)),
    path("echo", views.echo),
    path("stream", views.stream),
    path("astream", views.astream),
    path("file", views.file),
    path("boom", views.boom),
    path("health", views.health),
]
