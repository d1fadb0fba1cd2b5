from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from app.services.catalog import LOCAL_MODELS

# The Procfile's own lines: the first server of each tiny model.
IN_PROCFILE = {"tiny-sd", "tiny-sdxl"}


class Command(BaseCommand):
    help = (
        "Print the Procfile lines of the local model servers LIGHTBOX_LOCAL_MODELS asks for beyond the Procfile's "
        '(e.g. "tiny-sd*3 sd-turbo": two more tiny-sd servers and one sd-turbo server); `make run` appends them.'
    )

    def handle(self, *args, **options):
        unknown = [name for name in settings.LOCAL_POOLS if name not in LOCAL_MODELS]
        if unknown:
            raise CommandError(
                f"LIGHTBOX_LOCAL_MODELS: no local model {', '.join(unknown)}. Known: {', '.join(LOCAL_MODELS)}."
            )
        for name, count in settings.LOCAL_POOLS.items():
            for instance in range(1, count + 1):
                if instance == 1 and name in IN_PROCFILE:
                    continue
                process = name if instance == 1 else f"{name}-{instance}"
                self.stdout.write(f"{process}: python manage.py serve_model {name} --instance {instance}")
        # Fine-tuning (trainapi): the trainers LIGHTBOX_LOCAL_TRAINERS asks for.
        for name in settings.LOCAL_TRAINERS:
            if name not in LOCAL_MODELS:
                raise CommandError(f"LIGHTBOX_LOCAL_TRAINERS: no local model {name}. Known: {', '.join(LOCAL_MODELS)}.")
            self.stdout.write(f"{name}-trainer: python manage.py serve_model {name} --train")
