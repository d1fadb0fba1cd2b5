import os
import sys

from django.core.management.base import BaseCommand, CommandError

from app.services import storage
from app.services.catalog import LOCAL_MODELS, local_port, local_url


class Command(BaseCommand):
    help = "Run the local Cog server of one catalog model (local/NAME), uploading outputs to this site."

    def add_arguments(self, parser):
        parser.add_argument("name", help=", ".join(LOCAL_MODELS))

    def handle(self, name, **options):
        if name not in LOCAL_MODELS:
            raise CommandError(f"No local model {name!r}. Known: {', '.join(LOCAL_MODELS)}.")
        _, _, model, *family = LOCAL_MODELS[name]
        command = [
            sys.executable,
            "-m",
            "inference.serve",
            "--model",
            model,
            "--port",
            str(local_port(name)),
            "--upload-url",
            storage.upload_url(local_url(name)),
        ]
        if family:
            command += ["--family", family[0]]
        os.execv(sys.executable, command)
