"""Stored files go with their rows: deleting a prediction, a comparison or an
account (cascades included) deletes the images and thumbnails too."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from app.models import Output


@receiver(post_delete, sender=Output)
def delete_output_files(sender, instance, **kwargs):
    files = instance.stored_files()

    def delete():
        for field_file in files:
            field_file.storage.delete(field_file.name)

    # Only once the deletion is committed: a rolled-back delete keeps its files.
    transaction.on_commit(delete)
