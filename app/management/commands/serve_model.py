import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from app.services import storage
from app.services.backends.cog import weights_url_prefix
from app.services.catalog import LOCAL_MODELS, local_port, local_url


class Command(BaseCommand):
    help = "Run the local Cog server of one catalog model (local/NAME), uploading outputs to this site."

    def add_arguments(self, parser):
        parser.add_argument("name", help=", ".join(LOCAL_MODELS))
        parser.add_argument(
            "--instance",
            type=int,
            default=1,
            help="Which server of the model's pool (LIGHTBOX_LOCAL_MODELS=NAME*N): 1 to N; it listens on the "
            "model's port + 10 per instance after the first.",
        )

    def handle(self, name, instance=1, **options):
        if name not in LOCAL_MODELS:
            raise CommandError(f"No local model {name!r}. Known: {', '.join(LOCAL_MODELS)}.")
        if not 1 <= instance <= settings.MAX_LOCAL_INSTANCES:
            raise CommandError(f"--instance goes from 1 to {settings.MAX_LOCAL_INSTANCES}.")
        _, _, model, *family = LOCAL_MODELS[name]
        command = [
            sys.executable,
            "-m",
            "inference.serve",
            "--model",
            model,
            "--port",
            str(local_port(name, instance - 1)),
            "--upload-url",
            # Every server of a pool uploads as its version's (whose location
            # is the first server's): the pool's predictions take its uploads.
            storage.upload_url(local_url(name)),
        ]
        if family:
            command += ["--family", family[0]]
        # A fine-tune of this model runs here with its weights from our own
        # (often private) SITE_URL: the server fetches that prefix only.
        os.environ["LIGHTBOX_WEIGHTS_URL"] = weights_url_prefix()
        os.execv(sys.executable, command)
