from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def create_cache_table(using="default", **kwargs):
    """`migrate` also creates the database cache's table (settings.CACHES),
    when the cache is the database; it does nothing when the table exists."""
    call_command("createcachetable", database=using, verbosity=0)


class LightboxConfig(AppConfig):
    name = "app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from app import signals  # noqa: F401  (connects the receivers)

        post_migrate.connect(create_cache_table, sender=self)
