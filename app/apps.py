import sys

from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def create_cache_table(using="default", **kwargs):
    """`migrate` also creates the database cache's table (settings.CACHES),
    when the cache is the database; it does nothing when the table exists."""
    call_command("createcachetable", database=using, verbosity=0)


def load_prompt_sets(using="default", plan=None, **kwargs):
    """bench: `migrate` loads the shipped prompt sets (PartiPrompts, GenEval)
    once the tables are there; pages load them too when a flush removed them."""
    from django.db import connections

    from app.services import prompt_sets

    tables = connections[using].introspection.table_names()
    if using == "default" and "app_prompt" in tables and "app_promptset" in tables:
        prompt_sets.ensure_shipped()


RECURSION_LIMIT = 4000


class LightboxConfig(AppConfig):
    name = "app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from app import signals  # noqa: F401  (connects the receivers)

        post_migrate.connect(create_cache_table, sender=self)
        post_migrate.connect(load_prompt_sets, sender=self)
        # json's decoder counts each level of nesting against the recursion
        # limit: a row stored before inputs were limited to 32 levels (up to
        # ~900 deep) must still load on every page, however deep the stack of
        # middleware and test runner above it. 4000 frames fit the 8 MB stacks
        # of the web threads many times over.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
