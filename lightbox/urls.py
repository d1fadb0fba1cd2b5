from django.contrib import admin
from django.urls import include, path, re_path

from app.views import (
    accounts,
    api,
    arena,
    benchmarks,
    bundles,
    compare,
    comparisons,
    gallery,
    grids,
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
    # --- bench: Lightbox's own endpoints for prompt sets and benchmark runs ---
    path("prompt-sets", api.prompt_set_list, name="prompt-sets"),
    path("benchmarks", api.benchmarks, name="benchmarks"),
    path("benchmarks/<str:run_id>", api.benchmark, name="benchmark"),
    path("benchmarks/<str:run_id>/predictions", api.benchmark_predictions, name="benchmark-predictions"),
    path("benchmarks/<str:run_id>/stop", api.benchmark_stop, name="benchmark-stop"),
    path("benchmarks/<str:run_id>/resume", api.benchmark_resume, name="benchmark-resume"),
    # --- end bench ---
    # --- grids (issue 14): Lightbox's own endpoints ---
    path("grids", api.grids_list, name="grids"),
    path("grids/<str:grid_id>", api.grid, name="grid"),
    path("grids/<str:grid_id>/predictions", api.grid_predictions, name="grid-predictions"),
    path("grids/<str:grid_id>/cancel", api.grid_cancel, name="grid-cancel"),
    # --- end grids ---
    # --- Arena and leaderboard (issue 15): a Lightbox extension ---
    path("leaderboard", api.arena_leaderboard, name="leaderboard"),
    path("arena/votes", api.arena_votes, name="arena-votes"),
    # --- end arena ---
    # Lightbox's own operations (issue 14): comparisons as JSON for scripts.
    path("comparisons", api.comparisons, name="comparisons"),
    path("comparisons/<str:comparison_id>", api.comparison, name="comparison"),
    path("comparisons/<str:comparison_id>/predictions", api.comparison_predictions, name="comparison-predictions"),
    # End of the comparisons block.
    path("openapi.json", api.openapi, name="openapi"),
    # --- Reproducibility bundles (Lightbox extension; docs/bundles.md) ---
    path("predictions/<str:prediction_id>/bundle", api.prediction_bundle, name="prediction-bundle"),
    path("comparisons/<str:comparison_id>/bundle", api.comparison_bundle, name="comparison-bundle"),
    path("grids/<str:grid_id>/bundle", api.grid_bundle, name="grid-bundle"),
    path("benchmarks/<str:benchmark_id>/bundle", api.benchmark_bundle, name="benchmark-bundle"),
    path("bundles", api.bundles_import, name="bundles"),
    path("bundles/<str:reproduction_id>", api.bundle_reproduction, name="bundle"),
    # --- end of reproducibility bundles ---
    re_path(r"^(?P<path>.*)$", api.not_found),
]

hook_patterns = [
    path("cog/uploads/<str:token>/<str:upload_id>/<str:filename>", hooks.cog_upload, name="cog-upload-file"),
    path("cog/uploads/<str:token>/<str:filename>", hooks.cog_upload, name="cog-upload"),
    path("cog/<str:run_id>/<str:token>", hooks.cog_webhook, {"kind": "prediction"}, name="cog"),
    path("replicate/<str:run_id>", hooks.replicate_webhook, {"kind": "prediction"}, name="replicate"),
    # Trainings (fine-tuning: trainapi): the trainer's webhooks, a fine-tune's weights.
    path("cog/trainings/<str:run_id>/<str:token>", hooks.cog_webhook, {"kind": "training"}, name="cog-training"),
    path("replicate/trainings/<str:run_id>", hooks.replicate_webhook, {"kind": "training"}, name="replicate-training"),
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
    # viewer: settings restored from a PNG, the compare viewer
    path("restore", playground.restore, name="playground-restore"),
    path("compare", compare.compare, name="compare"),
    path("compare/diff.png", compare.compare_diff, name="compare-diff"),
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
    # --- grids (issue 14) ---
    path("g/preview", playground.grid_preview, name="grid-preview"),
    path("g/new", playground.grid_new, name="grid-new"),
    path("g/<str:grid_id>", grids.grid, name="grid"),
    path("g/<str:grid_id>/changes", grids.grid_changes, name="grid-changes"),
    path("g/<str:grid_id>/cancel", grids.grid_cancel, name="grid-cancel"),
    path("g/<str:grid_id>/rerun", grids.grid_rerun, name="grid-rerun"),
    path("g/<str:grid_id>/visibility", grids.grid_visibility, name="grid-visibility"),
    path("g/<str:grid_id>/grid.png", grids.grid_image, name="grid-image"),
    path("g/<str:grid_id>/grid.zip", grids.grid_zip, name="grid-zip"),
    path("g/<str:grid_id>/preview.jpg", grids.grid_preview_image, name="grid-preview-image"),
    # --- end grids ---
    # --- Arena and leaderboard (issue 15) ---
    path("arena", arena.arena, name="arena"),
    path("arena/vote", arena.vote, name="arena-vote"),
    path("arena/image/<str:token>/<str:side>", arena.image, name="arena-image"),
    path("leaderboard", arena.leaderboard, name="leaderboard"),
    path("leaderboard/votes.csv", arena.votes_csv, name="leaderboard-votes"),
    path("moderation/arena-voters", moderation.arena_voter, name="moderation-arena-voter"),
    # --- end arena ---
    path("help/running-models", help.running_models, name="help-running-models"),
    # --- Reproducibility bundles, re-runs on the latest version, checks (docs/bundles.md) ---
    path("bundles/import", bundles.import_page, name="bundle-import"),
    path("bundles/export/<str:kind>/<str:item_id>", bundles.export, name="bundle-export"),
    path("bundles/latest/<str:kind>/<str:item_id>", bundles.rerun_latest, name="bundle-latest"),
    path("bundles/<str:reproduction_id>", bundles.reproduction, name="reproduction"),
    path(
        "bundles/<str:reproduction_id>/before/<int:position>.png", bundles.expected_image, name="reproduction-expected"
    ),
    path("p/<str:prediction_id>/repro", bundles.repro_check, name="repro-check"),
    path("p/<str:prediction_id>/repro/status", bundles.repro_status, name="repro-status"),
    # --- end of reproducibility ---
    # --- bench: prompt sets and benchmark runs ---
    path("prompt-sets", benchmarks.prompt_set_list, name="prompt-sets"),
    path("b/", benchmarks.benchmarks_list, name="benchmarks"),
    path("b/new", benchmarks.benchmark_new, name="benchmark-new"),
    path("b/<str:run_id>", benchmarks.benchmark, name="benchmark"),
    path("b/<str:run_id>/stop", benchmarks.benchmark_stop, name="benchmark-stop"),
    path("b/<str:run_id>/resume", benchmarks.benchmark_resume, name="benchmark-resume"),
    path("b/<str:run_id>/visibility", benchmarks.benchmark_visibility, name="benchmark-visibility"),
    path("b/<str:run_id>/watch", benchmarks.benchmark_watch, name="benchmark-watch"),
    path("b/<str:run_id>/versus", benchmarks.benchmark_versus, name="benchmark-versus"),
    # --- end bench ---
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
