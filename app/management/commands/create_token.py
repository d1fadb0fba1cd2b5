from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from app.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for an existing user and print it (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")

    def handle(self, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}. Create one with: python manage.py createsuperuser")
        _, raw = ApiToken.issue(user, name=name)
        self.stdout.write(raw)
