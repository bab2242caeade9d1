"""Database reads a process may reuse for a few seconds: what every request reads and what seldom changes
(the active embedding space, a library's language means, which classifier fit is current, thresholds).

One rule for all of them:
- a value is reused for `seconds` after it was read, then read again;
- inside a transaction it is always read: the transaction may just have changed it, and sees its own snapshot;
- a change made in this process (a save or delete of the models it comes from) forgets everything at once and
  again when that change commits (a read in between, outside the transaction, still saw the old rows);
- a migrate or a flush (tests) forgets everything.
Other processes see a change at most `seconds` late.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from django.db import connection, transaction
from django.db.models.signals import post_delete, post_migrate, post_save


class RecentReads:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, read: Callable[[], Any]) -> Any:
        if connection.in_atomic_block or not connection.get_autocommit():
            return read()
        now = time.monotonic()
        with self._lock:
            remembered = self._values.get(key)
        if remembered is not None and now - remembered[0] < self.seconds:
            return remembered[1]
        value = read()
        with self._lock:
            self._values[key] = (now, value)
        return value

    def __len__(self) -> int:
        """How many values are remembered now (fresh or not)."""
        return len(self._values)

    def forget(self, **_) -> None:
        with self._lock:
            self._values.clear()

    def forget_now_and_after_commit(self, **_) -> None:
        self.forget()
        transaction.on_commit(self.forget)

    def forget_when_changed(self, *models, name: str) -> None:
        """Connect the signals: a save or delete of any of `models`, and every migrate or flush."""
        for model in models:
            for signal, event in ((post_save, "saved"), (post_delete, "deleted")):
                signal.connect(self.forget_now_and_after_commit, sender=model, weak=False,
                               dispatch_uid=f"{name}.{model._meta.label}.{event}")
        post_migrate.connect(self.forget, weak=False, dispatch_uid=f"{name}.flushed")
