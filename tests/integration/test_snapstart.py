"""Function start: init loads what the first record needs; SnapStart restore hooks as the runtime runs them."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import boto3
import pytest
import snapshot_restore_py

import lambda_ingest.handler  # noqa: F401  (the function's init: registers the restore hook)
from lambda_ingest import clients, snapstart
from lambda_ingest.settings import reset_settings
from tests.conftest import ROOT


def run_restore_hooks() -> None:
    """What Lambda's runtime does on resuming an environment from the snapshot: the registered hooks, in order."""
    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)


def test_handler_init_imports_what_the_first_record_needs() -> None:
    # Given a fresh interpreter; When it imports the handler module (the function's init)
    code = (
        "import json, sys, snapshot_restore_py\n"
        "import lambda_ingest.handler\n"
        "print(json.dumps({'modules': sorted(sys.modules),"
        " 'hooks': [f.__qualname__ for f, _, _ in snapshot_restore_py.get_after_restore()]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    found = json.loads(out)
    # Then ocs_archive's file classes (and astropy with them) are loaded, and the restore hook is registered
    assert set(snapstart.FIRST_INVOCATION_MODULES) <= set(found["modules"])
    assert {"astropy.io.fits", "astropy.wcs"} <= set(found["modules"])
    assert found["hooks"] == ["after_restore"]


def test_a_bad_ocs_archive_variable_is_left_for_the_first_record(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given ocs_archive's settings not yet imported and a variable it cannot parse
    for name in [m for m in sys.modules if m.startswith("ocs_archive")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("FILETYPE_MAPPING_OVERRIDES", "{not a dict")
    # When init loads the modules; Then init survives, naming what the first record will report
    assert "ocs_archive.settings.settings" in snapstart.import_first_invocation_modules()


def test_restored_environment_opens_its_own_clients() -> None:
    # Given clients created before the snapshot
    before = clients.s3()
    # When the environment is restored; Then new clients (new connection pools) are made
    run_restore_hooks()
    assert clients.s3() is not before


def test_restored_environment_draws_its_own_random_numbers() -> None:
    # Given the generator's state as the snapshot captured it
    random.seed(1234)
    snapshot_draw = random.random()
    random.seed(1234)
    # When the environment is restored; Then it does not replay the snapshot's sequence
    run_restore_hooks()
    assert random.random() != snapshot_draw


def test_restored_environment_reads_a_rotated_archive_token(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the archive token read from Secrets Manager before the snapshot (cached for minutes)
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(Name="archive-token", SecretString="token-at-snapshot")["ARN"]
    monkeypatch.delenv("AUTH_TOKEN")
    monkeypatch.setenv("AUTH_TOKEN_SECRET_ARN", arn)
    reset_settings()
    assert clients.archive_token() == "token-at-snapshot"
    secrets.put_secret_value(SecretId=arn, SecretString="rotated-token")
    assert clients.archive_token() == "token-at-snapshot"  # the cache, as in a running environment
    # When an environment is restored from that snapshot; Then it reads the token anew
    run_restore_hooks()
    assert clients.archive_token() == "rotated-token"
