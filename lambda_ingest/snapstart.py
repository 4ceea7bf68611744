"""Function start: load at init what the first invocation needs; SnapStart runtime hooks.

Init runs before the first event (and, with SnapStart, once per published version, before the snapshot),
so the modules record building needs (ocs_archive's file classes and the astropy paths they load, ~0.5 s)
are imported there rather than on the first record.

With SnapStart, many execution environments resume from one snapshot. State that must not be shared
between them is dropped after a restore (`after_restore`): the boto3 clients and the archive session with
their pooled connections (the sockets of the snapshot's network are gone), the cached archive token (a
rotation after the snapshot would go unseen), the idempotency layer's client, and the random generators'
state (every restored environment would draw the same sequence). The hooks come from AWS's
snapshot-restore-py library, which Lambda's Python runtimes include; without it (tests, the CLI) nothing
is registered.
"""

from __future__ import annotations

import importlib
import random

# What the first record would otherwise import (record.py imports these lazily, by name).
FIRST_INVOCATION_MODULES = (
    "ocs_archive.settings.settings",
    "ocs_archive.input.file",
    "ocs_archive.input.filefactory",
    "ocs_archive.input.fitsfile",
    "ocs_archive.input.tarwithfitsfile",
    "ocs_archive.input.thumbnailfile",
    "aws_lambda_powertools.utilities.idempotency",
)


def import_first_invocation_modules() -> list[str]:
    """Import what the first record needs; returns the modules that failed (left for the first record).

    ocs_archive reads its own environment at import, with bare int()/literal_eval(): a bad value must
    surface on the first record as the configuration fault it is (metric, log, retry), not kill init.
    """
    failed = []
    for name in FIRST_INVOCATION_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # reported when the first record imports it again
            failed.append(name)
    return failed


def after_restore() -> None:
    """Forget what a restored environment must not share with the others resumed from the same snapshot."""
    from lambda_ingest import clients
    from lambda_ingest.outcomes import reset_processor

    clients.reset_clients()  # boto3 clients, archive session (connections), archive token cache
    reset_processor()  # the idempotency layer holds its own DynamoDB client
    random.seed()  # from os.urandom: each environment draws its own sequence
    numpy_random = importlib.import_module("numpy.random") if _loaded("numpy") else None
    if numpy_random is not None:
        numpy_random.seed()


def _loaded(module: str) -> bool:
    import sys

    return module in sys.modules


def register_hooks() -> bool:
    """Register `after_restore` with Lambda's SnapStart runtime; False where the library is absent."""
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return False
    register_after_restore(after_restore)
    return True


def prepare() -> None:
    """Called once at the handler module's import (the function's init)."""
    import_first_invocation_modules()
    register_hooks()
