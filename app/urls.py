from django.contrib import admin
from django.urls import include, path, re_path

from app.views import api, health, hooks, media

api_patterns = [
    path("predictions", api.predictions, name="predictions"),
    path("predictions/<str:prediction_id>", api.prediction, name="prediction"),
    path("predictions/<str:prediction_id>/cancel", api.prediction_cancel, name="prediction-cancel"),
    path("models/<str:owner>/<str:name>", api.model, name="model"),
    path("models/<str:owner>/<str:name>/predictions", api.model_predictions, name="model-predictions"),
    path("models/<str:owner>/<str:name>/versions", api.versions, name="versions"),
    path("models/<str:owner>/<str:name>/versions/<str:version_id>", api.version, name="version"),
    path("webhooks/default/secret", api.webhook_secret, name="webhook-secret"),
    path("openapi.json", api.openapi, name="openapi"),
    re_path(r"^(?P<path>.*)$", api.not_found),
]

hook_patterns = [
    path("cog/uploads/<str:token>/<str:upload_id>/<str:filename>", hooks.cog_upload, name="cog-upload-file"),
    path("cog/uploads/<str:token>/<str:filename>", hooks.cog_upload, name="cog-upload"),
    path("cog/<str:prediction_id>/<str:token>", hooks.cog_webhook, name="cog"),
    path("replicate/<str:prediction_id>", hooks.replicate_webhook, name="replicate"),
]

urlpatterns = [
    path("v1/", include((api_patterns, "api"))),
    path("hooks/", include((hook_patterns, "hooks"))),
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    re_path(r"^media/(?P<path>.+)$", media.serve_media, name="media"),
    # Signed, expiring media URLs (the API's outputs); outside /media/, which
    # test live servers serve without asking Django.
    re_path(r"^files/(?P<token>[^/]+)/(?P<path>outputs/.+)$", media.serve_signed_media, name="signed-media"),
]
