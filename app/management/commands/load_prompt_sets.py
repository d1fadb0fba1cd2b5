"""Load the shipped prompt sets (PartiPrompts, GenEval) that are missing; idempotent."""

from django.core.management.base import BaseCommand

from app.models import PromptSet
from app.services import prompt_sets


class Command(BaseCommand):
    help = "Load the shipped prompt sets (PartiPrompts, GenEval) if they are missing."

    def handle(self, *args, **options):
        prompt_sets.ensure_shipped()
        for prompt_set in PromptSet.objects.filter(owner=None).order_by("name"):
            self.stdout.write(f"{prompt_set.name}: {prompt_set.prompts.count()} prompts ({prompt_set.license})")
