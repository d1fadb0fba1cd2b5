"""Waiting for a prediction to end (the API's `Prefer: wait`), woken the moment
it does rather than at the next look at its row.

The result lands in whichever process got the backend's webhook, so the news
has to cross processes. On PostgreSQL it goes by NOTIFY: the transition that
ends a prediction calls `ended()` inside its transaction, so the notice is
delivered at commit, never before the row says so. Each web process keeps one
LISTENing connection, on a daemon thread started by its first wait, that wakes
the requests waiting for that prediction.

The row stays the truth: a waiting request still looks at it, often until the
listener is up, then every LISTENED_POLL seconds in case a notice is lost (the
listener reconnecting, say). On SQLite there are no notices, and waiting is
polling alone; so it is with LIGHTBOX_WAIT_NOTIFY off (for a connection pooler
that does not pass notices on, such as PgBouncer in transaction mode).

A waiting request waits on the web server's event loop (lightbox.webserver) and
holds no thread while it sleeps; the looks at the rows of all the requests
waiting in a process take one pool thread for one query at a time.
"""

import asyncio
import logging
import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

log = logging.getLogger(__name__)

CHANNEL = "lightbox_prediction_ended"
# How often a waiting request looks at the row anyway once notices flow.
LISTENED_POLL = 0.5


def ended(prediction_id, using=DEFAULT_DB_ALIAS):
    """Tell waiting requests that this prediction ended; call it inside the
    transaction that ends it."""
    connection = connections[using]
    if connection.vendor == "postgresql" and settings.WAIT_NOTIFY:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, prediction_id])


def release_all():
    """End every wait of this process now, and any wait that begins from now
    on: the web server is shutting down, and each waiting request answers its
    prediction as it is rather than being cut off at the end of the grace period."""
    LISTENER.release_all()


async def wait(prediction_id, seconds, ended):
    """Return True when the prediction has ended, False after `seconds`.

    It runs on the web server's event loop and holds no thread while it
    sleeps. `ended(ids)` (sync: the set of those ids whose rows say ended)
    runs on the loop's executor, for the looks of all the loop's waiters at
    once (`_Looks`). A notice ends the wait without a look: it is sent at the
    commit of the transition that ended the prediction.

    While notices flow, a waiter sleeps until its notice (or its deadline),
    and one sweep per loop looks at all their rows every LISTENED_POLL
    seconds in case a notice is lost: a waiter costs no wakeups of its own.
    Without notices it looks every 5 ms at first, then every tenth of the time
    waited so far (at most 0.1 s): the answer comes within ~10% of the
    prediction's own time, and a long wait costs few queries."""
    started = time.monotonic()
    deadline = started + seconds
    loop = asyncio.get_running_loop()
    woken = LISTENER.subscribe(prediction_id, _LoopEvent(loop))
    looks = _Looks.of(loop, ended)
    try:
        while True:
            looked = time.monotonic()
            if LISTENER.released:
                return False
            if await looks.look(prediction_id):
                return True
            if looked >= deadline:
                return False
            listened = LISTENER.heard_everything_since(looked)
            if listened:
                looks.sweep(prediction_id, woken)
            timeout = deadline - looked if listened else min(_interval(started, looked), deadline - looked)
            try:
                await asyncio.wait_for(woken.wait(), timeout)
                return True
            except TimeoutError:
                pass
            finally:
                looks.unsweep(prediction_id, woken)
    finally:
        LISTENER.unsubscribe(prediction_id, woken)
        looks.leave()


def _interval(started, looked):
    return min(max(0.005, (looked - started) / 10), 0.1)


class _Looks:
    """The looks at the rows of one event loop's waiters, made together: one
    query (on a pool thread) answers every waiter that looked meanwhile. A
    round gathers looks for longer the more requests wait (0.5 ms each, at
    most 50 ms), so a lone wait is not slowed and 200 cost ~20 queries a
    second, not 2,000."""

    GATHER_PER_WAITER = 0.0005
    GATHER_MAX = 0.05

    def __init__(self, loop, ended):
        self.loop = loop
        self.ended = ended
        self.waiters = 0
        self.pending = {}
        self.round = None
        self.swept = {}  # prediction id -> the events of its sleeping waiters
        self.sweeper = None

    @classmethod
    def of(cls, loop, ended):
        looks = _LOOKS.get((loop, ended))
        if looks is None:
            looks = _LOOKS[(loop, ended)] = cls(loop, ended)
        looks.waiters += 1
        return looks

    def leave(self):
        self.waiters -= 1
        if not self.waiters and not self.pending:
            _LOOKS.pop((self.loop, self.ended), None)

    def sweep(self, prediction_id, event):
        """Look at this row with the others every LISTENED_POLL seconds, and
        set `event` if it ended."""
        self.swept.setdefault(prediction_id, set()).add(event)
        if self.sweeper is None:
            self.sweeper = self.loop.create_task(self._sweep())

    def unsweep(self, prediction_id, event):
        events = self.swept.get(prediction_id, set())
        events.discard(event)
        if not events:
            self.swept.pop(prediction_id, None)

    async def _sweep(self):
        try:
            while self.swept:
                await asyncio.sleep(LISTENED_POLL)
                over = await sync_to_async(_look, thread_sensitive=False)(self.ended, list(self.swept))
                for prediction_id in over:
                    for event in list(self.swept.get(prediction_id, ())):
                        event.set()
        except Exception:  # the next sleeping waiter starts a new sweep; each still has its deadline
            log.warning("Looking at the rows of waiting requests failed", exc_info=True)
        finally:
            self.sweeper = None

    async def look(self, prediction_id):
        answer = self.loop.create_future()
        self.pending.setdefault(prediction_id, []).append(answer)
        if self.round is None:
            self.round = self.loop.create_task(self._round())
        return await answer

    async def _round(self):
        await asyncio.sleep(min(self.GATHER_MAX, self.GATHER_PER_WAITER * (self.waiters - 1)))
        pending, self.pending, self.round = self.pending, {}, None
        try:
            over = await sync_to_async(_look, thread_sensitive=False)(self.ended, list(pending))
        except Exception as exc:  # noqa: BLE001 - every waiter of the round gets the error
            for answers in pending.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(exc)
            return
        for prediction_id, answers in pending.items():
            for answer in answers:
                if not answer.done():
                    answer.set_result(prediction_id in over)


# (event loop, ended function) -> its _Looks; touched only on that loop's thread.
_LOOKS = {}


def _look(ended, ids):
    # A pool thread outside any request: no request_started/finished closes
    # its connection when the database dropped it.
    close_old_connections()
    return ended(ids)


class _LoopEvent(asyncio.Event):
    """An asyncio.Event the listener's thread can set."""

    def __init__(self, loop):
        super().__init__()
        self._owner = loop

    def set(self):
        try:
            self._owner.call_soon_threadsafe(super().set)
        except RuntimeError:
            pass  # the loop has closed: nobody is waiting any more


class Listener:
    """One LISTENing PostgreSQL connection per process, on a daemon thread,
    waking the events subscribed to each prediction id."""

    def __init__(self, using=DEFAULT_DB_ALIAS):
        self.using = using
        self._lock = threading.Lock()
        self._waiting = {}
        self._thread = None
        self._stopping = False
        # time.monotonic() when LISTEN took effect; None while not listening.
        self._listening_since = None
        # Set by release_all(): no wait lasts any more.
        self.released = False

    def subscribe(self, prediction_id, event):
        """Have `event.set()` called when the prediction ends; returns `event`."""
        with self._lock:
            self._waiting.setdefault(prediction_id, set()).add(event)
            notices = connections[self.using].vendor == "postgresql" and settings.WAIT_NOTIFY
            if notices and not (self._thread and self._thread.is_alive()):
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="lightbox-waits", daemon=True)
                self._thread.start()
        return event

    def release_all(self):
        """Set every subscribed event, and have waits that begin later end at once."""
        with self._lock:
            self.released = True
            events = [event for events in self._waiting.values() for event in events]
        for event in events:
            event.set()

    def unsubscribe(self, prediction_id, event):
        with self._lock:
            events = self._waiting.get(prediction_id, set())
            events.discard(event)
            if not events:
                self._waiting.pop(prediction_id, None)

    def heard_everything_since(self, moment):
        """Would a notice sent after `moment` reach us? Only if LISTEN was in
        effect before it (a notice sent earlier is lost, and only a look at
        the row since then tells)."""
        since = self._listening_since
        return since is not None and since <= moment

    def stop(self):
        """Close the connection (tests, before their database is dropped)."""
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self):
        import psycopg

        while not self._stopping:
            params = connections[self.using].get_connection_params()
            for key in ("cursor_factory", "context", "prepare_threshold"):
                params.pop(key, None)
            try:
                with psycopg.connect(autocommit=True, **params) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._listening_since = time.monotonic()
                    while not self._stopping:
                        for notice in connection.notifies(timeout=1.0):
                            self._wake(notice.payload)
            except Exception as exc:  # noqa: BLE001 - keep listening whatever went wrong
                if not self._stopping:
                    log.warning("Listening for ended predictions failed (%s); retrying in 1 s", exc)
            finally:
                self._listening_since = None
            if not self._stopping:
                time.sleep(1)

    def _wake(self, prediction_id):
        with self._lock:
            events = list(self._waiting.get(prediction_id, ()))
        for event in events:
            event.set()


LISTENER = Listener()
