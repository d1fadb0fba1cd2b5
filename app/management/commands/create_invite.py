from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from app.models import Invite


class Command(BaseCommand):
    help = "Create invite codes for LIGHTBOX_SIGNUP=invite and print their sign-up links, one a line."

    def add_arguments(self, parser):
        parser.add_argument("--note", default="", help="Who it is for (shown to staff in the admin).")
        parser.add_argument("--days", type=int, help="Expire after this many days (default: never).")
        parser.add_argument("--count", type=int, default=1, help="How many invites (default 1).")
        parser.add_argument("--by", help="The username of the staff member it is from.")

    def handle(self, note, days, count, by, **options):
        if count < 1 or (days is not None and days < 1):
            raise CommandError("--count and --days must be at least 1.")
        created_by = None
        if by:
            created_by = get_user_model().objects.filter(username=by).first()
            if created_by is None:
                raise CommandError(f"No user named {by!r}.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        for _ in range(count):
            invite = Invite.objects.create(note=note[:200], expires_at=expires_at, created_by=created_by)
            self.stdout.write(invite.signup_url)
        if settings.SIGNUP != "invite":
            self.stderr.write(
                f"Note: LIGHTBOX_SIGNUP is {settings.SIGNUP!r}; sign-up asks for invites only when it is 'invite'."
            )
