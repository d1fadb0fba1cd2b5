"""Grid tasks: thin, ids in, idempotent (app.services.grids does the work)."""

from celery import shared_task

from app.services import grids


@shared_task(bind=True, max_retries=None)
def materialise_grid(self, grid_id):
    """Start the cells of a grid not started yet; a limit that paces the
    grid (predictions at once, a minute) brings the task back later."""
    try:
        return grids.materialise(grid_id)
    except grids.Paced as paced:
        raise self.retry(countdown=paced.retry_after) from None
