import os
import sys

from django.core.management.base import BaseCommand, CommandError

from app.services.catalog import LOCAL_MODELS, local_trainer_port


class Command(BaseCommand):
    help = (
        "Run the LoRA trainer of one local model (Cog's training mode: PUT /trainings/{id}) on "
        "LIGHTBOX_COG_BASE_PORT + 200 + the model's offset (tiny-sd: 5301). `make run` starts tiny-sd's and "
        "those LIGHTBOX_LOCAL_TRAINERS names."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help=", ".join(LOCAL_MODELS))

    def handle(self, name, **options):
        if name not in LOCAL_MODELS:
            raise CommandError(f"No local model {name!r}. Known: {', '.join(LOCAL_MODELS)}.")
        _, _, model, *family = LOCAL_MODELS[name]
        port = local_trainer_port(name)
        # The weights come back inline in the webhook (coglet uploads only a
        # Path that is the whole output; docs/protocols.md), so no --upload-url.
        command = [sys.executable, "-m", "inference.serve", "--train", "--model", model, "--port", str(port)]
        if family:
            command += ["--family", family[0]]
        os.execv(sys.executable, command)
