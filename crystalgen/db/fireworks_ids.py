"""Race-free FireWorks id allocation: a workaround for a SecantusDB defect (see connect.install_fireworks_workarounds).

FireWorks hands out ``fw_id`` and ``launch_id`` with ``find_one_and_update({}, {"$inc": ...})``
on the ``fw_id_assigner`` collection and reads the counter from the returned *before* document.
SecantusDB can give two concurrent callers the same before-document, so concurrent submitters
or launchers get duplicate ids. Asking for the *after* document and subtracting the increment
yields exactly what mongod's before-document would, and is race-free on both servers.

``install()`` patches ``LaunchPad.__init__`` so every LaunchPad built in this process, including
those FireWorks builds itself from a launchpad file, counts this way. Our worker entry point
(``crystalgen-rlaunch``) installs it before handing over to FireWorks' own ``rlaunch``.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

COUNTER_ID = -1  # the _id FireWorks' own ``lpad reset`` gives the counter document


class AtomicCounterCollection:
    """Wraps the ``fw_id_assigner`` collection; everything but find_one_and_update passes through."""

    def __init__(self, collection) -> None:
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def find_one_and_update(self, filter, update, *args, **kwargs):
        increments = update.get("$inc", {}) if isinstance(update, dict) else {}
        if not increments or kwargs.get("return_document") is ReturnDocument.AFTER:
            return self._collection.find_one_and_update(filter, update, *args, **kwargs)
        kwargs["return_document"] = ReturnDocument.AFTER
        after = self._collection.find_one_and_update(filter, update, *args, **kwargs)
        if after is None:
            return None
        before = dict(after)
        for field, amount in increments.items():
            before[field] = after[field] - amount
        return before


def ensure_counters(lpad) -> None:
    """Create the id counters of a fresh database, as ``lpad reset`` would, without a race.

    FireWorks' ``_restart_ids`` deletes and re-creates the counter document, so two processes
    opening a fresh database at once could reset ids the first had already handed out. A
    ``$setOnInsert`` upsert on the fixed ``_id`` creates it once and never touches it again.
    """
    try:
        lpad.fw_id_assigner.update_one(
            {"_id": COUNTER_ID},
            {"$setOnInsert": {"next_fw_id": 1, "next_launch_id": 1}},
            upsert=True,
        )
    except DuplicateKeyError:
        pass  # another process created it between our lookup and insert


def after_launchpad_init(name: str, hook) -> None:
    """Run ``hook(lpad)`` at the end of every FireWorks ``LaunchPad.__init__`` in this process, including
    LaunchPads FireWorks builds itself from a launchpad file; once per ``name`` (idempotent)."""
    from fireworks.core.launchpad import LaunchPad

    installed = getattr(LaunchPad.__init__, "_crystalgen_hooks", ())
    if name in installed:
        return
    original_init = LaunchPad.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        hook(self)

    __init__._crystalgen_hooks = (*installed, name)
    LaunchPad.__init__ = __init__


def _atomic_counters(lpad) -> None:
    lpad.fw_id_assigner = AtomicCounterCollection(lpad.fw_id_assigner)


def install() -> None:
    """Make every FireWorks LaunchPad in this process allocate ids atomically (idempotent)."""
    after_launchpad_init("atomic ids", _atomic_counters)


def rlaunch_main() -> None:
    """``crystalgen-rlaunch``: FireWorks' ``rlaunch`` with atomic id allocation and crystalgen's other
    SecantusDB workarounds installed (``crystalgen.db.connect.install_fireworks_workarounds``)."""
    from crystalgen.db.connect import install_fireworks_workarounds

    install_fireworks_workarounds()
    from fireworks.scripts.rlaunch_run import rlaunch

    rlaunch()
