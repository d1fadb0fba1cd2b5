"""Stored files go with their rows: deleting a prediction, a comparison, a
file of /v1/files or an account (cascades included) deletes the images and
thumbnails too."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from app.models import File, Output, ReproductionItem


@receiver(post_delete, sender=Output)
def delete_output_files(sender, instance, **kwargs):
    files = instance.stored_files()

    def delete():
        for field_file in files:
            field_file.storage.delete(field_file.name)

    # Only once the deletion is committed: a rolled-back delete keeps its files.
    transaction.on_commit(delete)


@receiver(post_delete, sender=File)
def delete_file_content(sender, instance, **kwargs):
    name, storage = instance.file.name, instance.file.storage
    transaction.on_commit(lambda: storage.delete(name) if name else None)


@receiver(post_delete, sender=ReproductionItem)
def delete_expected_image(sender, instance, **kwargs):
    name, storage = instance.expected_file.name, instance.expected_file.storage
    transaction.on_commit(lambda: storage.delete(name) if name else None)
