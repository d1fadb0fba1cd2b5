"""Queue a Celery task by its name once the transaction commits.

Services queue work without importing the task modules, which are an
interface above them (docs/architecture.md). The task is looked up in the
Celery app's registry (its module imported on first use), so this is the task
object itself and `delay` behaves exactly as if it were imported: a test that
replaces a task's `delay` sees these calls too."""

from importlib import import_module

from celery import current_app
from django.db import transaction


def task(name):
    """The registered task called `name` ("package.module.function")."""
    if name not in current_app.tasks:
        import_module(name.rpartition(".")[0])
    return current_app.tasks[name]


def after_commit(task_name, *args, robust=False):
    """Queue `task_name(*args)` when the current transaction commits (at once
    outside one). `robust`: a broker error is logged, not raised, and the
    database row stays the truth for the reconciler to act on."""
    transaction.on_commit(lambda: task(task_name).delay(*args), robust=robust)
