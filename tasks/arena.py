"""Arena tasks: fit leaderboards off the request path (app.services.arena).

Queued debounced after votes change (arena.votes_changed); each fits from
the database as it is then, so a run that comes late or twice only repeats
the same work."""

from celery import shared_task

from app.services import arena


@shared_task
def recompute(arena_id):
    """The leaderboards of one arena ("" every comparison) and its prompt categories."""
    arena.recompute(arena_id)


@shared_task
def recompute_personal(voter_key):
    """One voter's personal leaderboard."""
    arena.recompute_personal(voter_key)
