from django.core.management.base import BaseCommand, CommandError

from app.services import catalog
from app.services.backends import BackendError


class Command(BaseCommand):
    help = "Add a version from a Cog server URL or a Replicate owner/name:version, reading its input schema."

    def add_arguments(self, parser):
        parser.add_argument("ref", help="http://host:port of a Cog server, or owner/name:version on Replicate")
        parser.add_argument("--model", help="owner/name to file a Cog server's version under")

    def handle(self, ref, model=None, **options):
        try:
            version = catalog.import_version(ref, model)
        except BackendError as exc:
            raise CommandError(str(exc))
        catalog.refresh_availability(version, max_age=0)
        self.stdout.write(f"{version.model}:{version.id}")
