"""kombu's filesystem transport (the embedded default), with messages written
whole.

kombu 5.7 creates a message file in the queue folder and then writes it. A
worker polling at that moment moves the still-empty file away, cannot decode
it and stops with "Unrecoverable error: JSONDecodeError" (celery/kombu#1551):
every prediction after that waits for a worker that is gone. Write each message
under a name the queue does not match, then rename it in: a rename within a
folder is atomic, so a worker sees a message whole or not at all.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: kombu matches "<anything>.<queue>.msg" after the first dot.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
