from django.core.management.base import BaseCommand

from app.services import catalog


class Command(BaseCommand):
    help = "Add the default catalog (the guide's Stable Diffusion models, local and on Replicate). Idempotent."

    def handle(self, *args, **options):
        for version in catalog.load_default():
            available = version.refresh_availability(max_age=0)
            state = "available" if available else f"unavailable: {version.unavailable_reason}"
            self.stdout.write(f"{version.model} ({version.backend}) {state}")
