"""Delete files in storage and the spool that no row names, once they are a
day old (LIGHTBOX_ORPHAN_TTL); beat runs the same sweep daily."""

from django.core.management.base import BaseCommand

from app.services import storage


class Command(BaseCommand):
    help = "Delete files under outputs/, uploads/ and the upload spool that no row names, once a day old."

    def handle(self, *args, **options):
        removed = storage.sweep_orphans()
        for name in removed:
            self.stdout.write(name)
        self.stderr.write(f"{len(removed)} files deleted.")
