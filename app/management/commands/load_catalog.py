from django.conf import settings
from django.core.management.base import BaseCommand

from app.services import catalog, prompt_sets


class Command(BaseCommand):
    help = "Add the default catalog (the guide's Stable Diffusion models, local and on Replicate). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="First wait up to SECONDS for the local model servers `make run` starts "
            "(tiny-sd, tiny-sdxl and LIGHTBOX_LOCAL_MODELS) to answer, so that their versions "
            "are catalogued with their schemas and the first request runs.",
        )

    def handle(self, *args, wait=0, **options):
        if wait:
            missing = catalog.wait_for_local(settings.SERVED_LOCAL_MODELS, timeout=wait)
            if missing:
                self.stderr.write(
                    f"Not answering after {wait:g} s: {', '.join(missing)}; cataloguing them as unavailable."
                )
        for version in catalog.load_default():
            available = catalog.refresh_availability(version, max_age=0)
            state = "available" if available else f"unavailable: {version.unavailable_reason}"
            self.stdout.write(f"{version.model} ({version.backend}) {state}")
        # bench: the shipped prompt sets, so `make run` has them from the first page.
        prompt_sets.ensure_shipped()
