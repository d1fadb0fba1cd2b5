from django.contrib import admin
from django.urls import include, path, re_path

from app.views import (
    accounts,
    api,
    comparisons,
    gallery,
    health,
    help,
    hooks,
    media,
    moderation,
    playground,
    predictions,
    trainings,
)

api_patterns = [
    path("predictions", api.predictions, name="predictions"),
    path("predictions/<str:prediction_id>", api.prediction, name="prediction"),
    path("predictions/<str:prediction_id>/cancel", api.prediction_cancel, name="prediction-cancel"),
    path("models", api.models, name="models"),
    path("models/<str:owner>/<str:name>", api.model, name="model"),
    path("models/<str:owner>/<str:name>/predictions", api.model_predictions, name="model-predictions"),
    path("models/<str:owner>/<str:name>/examples", api.model_examples, name="model-examples"),
    path("models/<str:owner>/<str:name>/readme", api.model_readme, name="model-readme"),
    path("models/<str:owner>/<str:name>/versions", api.versions, name="versions"),
    path("models/<str:owner>/<str:name>/versions/<str:version_id>", api.version, name="version"),
    path("deployments", api.deployments, name="deployments"),
    path("deployments/<str:owner>/<str:name>", api.deployment, name="deployment"),
    path("deployments/<str:owner>/<str:name>/predictions", api.deployment_predictions, name="deployment-predictions"),
    path("files", api.files, name="files"),
    path("files/<str:file_id>", api.file, name="file"),
    path("files/<str:file_id>/download", api.file_download, name="file-download"),
    # Trainings (fine-tuning: trainapi)
    path(
        "models/<str:owner>/<str:name>/versions/<str:version_id>/trainings",
        api.version_trainings,
        name="version-trainings",
    ),
    path("trainings", api.trainings, name="trainings"),
    path("trainings/<str:training_id>", api.training, name="training"),
    path("trainings/<str:training_id>/cancel", api.training_cancel, name="training-cancel"),
    path("account", api.account, name="account"),
    path("hardware", api.hardware_list, name="hardware"),
    path("collections", api.collections, name="collections"),
    path("collections/<str:slug>", api.collection, name="collection"),
    path("webhooks/default/secret", api.webhook_secret, name="webhook-secret"),
    path("openapi.json", api.openapi, name="openapi"),
    re_path(r"^(?P<path>.*)$", api.not_found),
]

hook_patterns = [
    path("cog/uploads/<str:token>/<str:upload_id>/<str:filename>", hooks.cog_upload, name="cog-upload-file"),
    path("cog/uploads/<str:token>/<str:filename>", hooks.cog_upload, name="cog-upload"),
    path("cog/<str:prediction_id>/<str:token>", hooks.cog_webhook, name="cog"),
    path("replicate/<str:prediction_id>", hooks.replicate_webhook, name="replicate"),
    # Trainings (fine-tuning: trainapi): the trainer's webhooks, a fine-tune's weights.
    path("cog/trainings/<str:training_id>/<str:token>", hooks.cog_training_webhook, name="cog-training"),
    path("replicate/trainings/<str:training_id>", hooks.replicate_training_webhook, name="replicate-training"),
    path("weights/<str:version_id>/<str:token>", hooks.weights, name="weights"),
]

account_patterns = [
    path("signup", accounts.signup, name="signup"),
    # Before Django's own (included below): throttled forms.
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("password_reset/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path("password_change/", accounts.PasswordChangeView.as_view(), name="password_change"),
    path("reset/<uidb64>/<token>/", accounts.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("", accounts.profile, name="profile"),
    path("history", accounts.history, name="history"),
    path("history/bulk", accounts.history_bulk, name="history-bulk"),
    path("tokens", accounts.token_create, name="token-create"),
    path("tokens/<int:token_id>/revoke", accounts.token_revoke, name="token-revoke"),
    path("delete", accounts.delete_account, name="delete-account"),
    path("content", accounts.content_preference, name="content-preference"),
    path("notices/dismiss", accounts.notices_dismiss, name="notices-dismiss"),
    path("", include("django.contrib.auth.urls")),
]

page_patterns = [
    path("", playground.playground, name="playground"),
    path("run", playground.run, name="run"),
    path("c/<str:comparison_id>", comparisons.comparison, name="comparison"),
    path("c/<str:comparison_id>/preview.jpg", comparisons.comparison_preview, name="comparison-preview"),
    path("c/<str:comparison_id>/cancel", comparisons.comparison_cancel, name="comparison-cancel"),
    path("c/<str:comparison_id>/rerun", comparisons.comparison_rerun, name="comparison-rerun"),
    path("c/<str:comparison_id>/add", comparisons.comparison_add_version, name="comparison-add"),
    path("c/<str:comparison_id>/delete", comparisons.comparison_delete, name="comparison-delete"),
    path("c/<str:comparison_id>/visibility", comparisons.comparison_visibility, name="comparison-visibility"),
    path("c/<str:comparison_id>/report", comparisons.comparison_report, name="comparison-report"),
    path("p/<str:prediction_id>", predictions.prediction, name="prediction"),
    path("p/<str:prediction_id>/cancel", predictions.prediction_cancel, name="prediction-cancel"),
    path("p/<str:prediction_id>/delete", predictions.prediction_delete, name="prediction-delete"),
    path("p/<str:prediction_id>/visibility", predictions.prediction_visibility, name="prediction-visibility"),
    path("p/<str:prediction_id>/report", predictions.prediction_report, name="prediction-report"),
    # Fine-tuning (trainapi)
    path("fine-tune", trainings.fine_tune, name="fine-tune"),
    path("t/<str:training_id>", trainings.training, name="training"),
    path("t/<str:training_id>/cancel", trainings.training_cancel, name="training-cancel"),
    path("gallery", gallery.gallery, name="gallery"),
    path("models", gallery.models, name="models"),
    path("models/<str:owner>/<str:name>", gallery.model, name="model"),
    path("moderation", moderation.queue, name="moderation"),
    path("moderation/<str:kind>/<str:item_id>", moderation.decide, name="moderation-decide"),
    path("account/", include(account_patterns)),
    path("help/running-models", help.running_models, name="help-running-models"),
]

# Every answer under /v1 is JSON, errors Django raises included.
handler400 = "app.views.problems.bad_request"
handler403 = "app.views.problems.permission_denied"
handler404 = "app.views.problems.page_not_found"
handler500 = "app.views.problems.server_error"

urlpatterns = page_patterns + [
    path("v1/", include((api_patterns, "api"))),
    re_path(r"^v1$", api.not_found),
    path("hooks/", include((hook_patterns, "hooks"))),
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    re_path(r"^media/(?P<path>.+)$", media.serve_media, name="media"),
    # Signed, expiring media URLs (the API's outputs); outside /media/, which
    # test live servers serve without asking Django.
    re_path(r"^files/(?P<token>[^/]+)/(?P<path>outputs/.+)$", media.serve_signed_media, name="signed-media"),
]
