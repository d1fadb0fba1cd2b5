from django.apps import AppConfig


class LightboxConfig(AppConfig):
    name = "app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from app import signals  # noqa: F401  (connects the receivers)
