"""Security: the archive token never leaks; header reading has hard, configurable limits.

(Least privilege, private TLS-only encrypted buckets, no wildcard resources and no secret in the synthesised
template are asserted by the infrastructure tests, tests/infra/test_infra_stack.py.)
"""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits

from lambda_ingest.handler import handler
from lambda_ingest.local import synthetic as sy
from tests.conftest import ADMIN_TOKEN, LANDING, ROOT
from tests.reliability.support import frame_files, upload

WRONG_TOKEN = "wrong-token-5f1c0a9e7b3d4c2a8e6f"


# --------------------------------------------------------------------------------------------------------
# The archive token
# --------------------------------------------------------------------------------------------------------


def test_the_archive_token_appears_in_no_log_error_metric_tag_or_request_line(
    s3, archive_api, queue, context, monkeypatch, logs, capsys, caplog
) -> None:
    from lambda_ingest import clients
    from lambda_ingest.errors import IngestError
    from lambda_ingest.ingest import ingest_object
    from lambda_ingest.observability import logger
    from lambda_ingest.settings import get_settings, reset_settings

    # Given every logger at DEBUG (Powertools JSON lines, botocore, urllib3, the emulator), and a mixed run:
    # successes, rejections, transient 5xx (before and after the copy), a timeout, and a wrong token (401)
    caplog.set_level(logging.DEBUG)
    logger.setLevel("DEBUG")
    seen: list[str] = []
    try:
        good = frame_files(4)
        upload(s3, good)
        bad = f"{sy.frame_name(seq=90, ext='')}.fits"
        s3.put_object(Bucket=LANDING, Key=bad, Body=sy.header_without_end())
        archive_api.inject(status=503, count=1, method="GET")
        archive_api.inject(status=500, count=1, method="POST")
        archive_api.inject(delay=0.4, count=1, method="POST")
        monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.2")
        reset_settings()
        seen += [repr(r) for r in queue.deliver_all(handler, context)]
        # ... then the token rotated to a wrong value: every archive call is refused with 401
        monkeypatch.setenv("AUTH_TOKEN", WRONG_TOKEN)
        reset_settings()
        late = frame_files(1, first_seq=200)
        upload(s3, late)
        seen += [repr(r) for r in queue.deliver_all(handler, context)]
        for key in [f"{b}{e}" for b, e in late] + [bad]:
            try:
                ingest_object(LANDING, key)
            except IngestError as exc:
                seen += [str(exc), repr(exc), str(exc.__cause__), str(exc.__context__)]
        seen += [repr(get_settings()), repr(clients.archive())]
    finally:
        logger.setLevel("INFO")
    captured = capsys.readouterr()
    tags = [
        str(s3.get_object_tagging(Bucket=LANDING, Key=o["Key"])["TagSet"])
        for o in s3.list_objects_v2(Bucket=LANDING).get("Contents", [])
    ]
    requests_seen = [f"{method} {target} {status}" for method, target, status in archive_api.requests_seen]
    # Then the run did meet each case: successes, a rejection, transient failures, 401s
    assert len(archive_api.versions()) == 4
    assert any("rejected" in line.get("message", "") for line in logs.lines)
    assert any(r.endswith(" 401") for r in requests_seen) and any(r.endswith(" 500") for r in requests_seen)
    assert any(line.get("outcome") == "transient" for line in logs.lines)
    assert '"_aws"' in captured.out  # EMF metrics were printed
    # And neither the real nor the wrong token appears anywhere an operator or an attacker could read
    surfaces = {
        "powertools log lines": logs.text,
        "stdout (EMF metrics)": captured.out,
        "stderr": captured.err,
        "python logging (DEBUG)": "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records),
        "exceptions and handler results": "\n".join(seen),
        "landing object tags": "\n".join(tags),
        "archive request lines": "\n".join(requests_seen),
    }
    for token in (ADMIN_TOKEN, WRONG_TOKEN):
        leaks = [where for where, text in surfaces.items() if token in text]
        assert leaks == [], f"token found in {leaks}"


def test_settings_and_clients_do_not_show_the_token(monkeypatch) -> None:
    from lambda_ingest import clients
    from lambda_ingest.settings import get_settings

    # The settings' repr leaves the token out; the client keeps it only in its session headers
    assert ADMIN_TOKEN not in repr(get_settings())
    assert ADMIN_TOKEN not in repr(clients.archive())


# --------------------------------------------------------------------------------------------------------
# Header reading limits
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def fetched(monkeypatch) -> list[int]:
    """The size of every ranged GET the engine makes."""
    from lambda_ingest import store

    sizes: list[int] = []
    original, original_first = store.read_range, store.open_landing

    def spy(obj: Any, offset: int, length: int) -> bytes:
        data = original(obj, offset, length)
        sizes.append(len(data))
        return data

    def spy_first(*args: Any) -> tuple[Any, bytes]:
        obj, data = original_first(*args)  # the first ranged GET, which also describes the object
        sizes.append(len(data))
        return obj, data

    monkeypatch.setattr(store, "read_range", spy)
    monkeypatch.setattr(store, "open_landing", spy_first)
    return sizes


def limits_env(monkeypatch, initial_read: int | None = None, **values: int) -> None:
    from lambda_ingest import fits_header
    from lambda_ingest.settings import reset_settings

    if initial_read is not None:  # a constant, not a setting
        monkeypatch.setattr(fits_header, "INITIAL_READ", initial_read)
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    reset_settings()


def ingest_rejected(key: str) -> tuple[Exception, float]:
    from lambda_ingest.errors import InvalidFileError
    from lambda_ingest.ingest import ingest_object

    start = time.perf_counter()
    with pytest.raises(InvalidFileError) as err:
        ingest_object(LANDING, key)
    return err.value, time.perf_counter() - start


def test_card_limit_stops_a_10000_card_header_after_reading_a_bounded_prefix(s3, archive_api, fetched) -> None:
    from lambda_ingest.settings import get_settings

    # Given a frame whose header holds 10,000 cards (800 KB), over the default HEADER_MAX_CARDS (5000)
    s3.put_object(Bucket=LANDING, Key="huge.fits", Body=sy.huge_header_frame(10_000))
    # When it is ingested
    error, seconds = ingest_rejected("huge.fits")
    # Then it is refused naming the limit, having fetched less than the 5000 cards' worth plus one growth step
    assert "HEADER_MAX_CARDS" in str(error)
    limit_bytes = get_settings().header_max_cards * 80
    assert sum(fetched) <= 2 * limit_bytes
    assert seconds < 5


def test_byte_limit_is_a_setting(s3, archive_api, monkeypatch, fetched) -> None:
    # Given HEADER_MAX_BYTES lowered to 10 blocks, and a frame with 1,000 extra cards (about 100 KB of header)
    limits_env(monkeypatch, initial_read=2880, HEADER_MAX_BYTES=10 * 2880)
    s3.put_object(Bucket=LANDING, Key="big.fits", Body=sy.huge_header_frame(1_000))
    # When it is ingested, Then it is refused naming the limit, having fetched no more than twice the limit
    error, _ = ingest_rejected("big.fits")
    assert "HEADER_MAX_BYTES" in str(error)
    assert sum(fetched) <= 2 * 10 * 2880


def hdu_chain(extensions: int) -> bytes:
    """A primary HDU and `extensions` image extensions, none with the archive's required keywords."""
    hdus: list[Any] = [fits.PrimaryHDU()]
    hdus += [fits.ImageHDU(data=None, name=f"EXT{i}") for i in range(extensions)]
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


@pytest.mark.parametrize("max_hdus", [16, 4])
def test_hdu_limit_stops_the_walk(s3, archive_api, monkeypatch, fetched, max_hdus: int) -> None:
    # Given a file of 40 HDUs, none holding the required keywords, and HEADER_MAX_HDUS at `max_hdus`
    limits_env(monkeypatch, initial_read=2880, HEADER_MAX_HDUS=max_hdus)
    s3.put_object(Bucket=LANDING, Key="many.fits", Body=hdu_chain(40))
    # When it is ingested, Then it is refused after walking exactly max_hdus headers
    error, _ = ingest_rejected("many.fits")
    assert f"first {max_hdus} HDUs (HEADER_MAX_HDUS)" in str(error)
    assert sum(fetched) <= 2 * (max_hdus + 1) * 2880


def test_a_header_declaring_a_petabyte_data_unit_costs_one_read(s3, archive_api, fetched) -> None:
    # Given a small file whose header declares a 2**50-byte data unit
    header = sy.lco_header(sy.DEFAULT_BASENAME)
    head = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 1), ("NAXIS1", 2**50)])
    head.extend(header.cards)
    s3.put_object(Bucket=LANDING, Key="claims.fits", Body=head.tostring().encode("ascii"))
    # When it is ingested, Then it is refused as truncated without any read beyond the first
    error, seconds = ingest_rejected("claims.fits")
    assert "data unit is truncated" in str(error)
    assert len(fetched) == 1 and seconds < 5


def test_limits_are_settings_with_safe_defaults_and_floors() -> None:
    from lambda_ingest.errors import ConfigurationError
    from lambda_ingest.fits_header import HeaderLimits
    from lambda_ingest.settings import load_settings

    # The defaults: the documented safe values
    defaults = load_settings({})
    assert (defaults.header_max_cards, defaults.header_max_bytes, defaults.header_max_hdus) == (5000, 2 * 2**20, 16)
    assert defaults.tar_max_scan_bytes == 256 * 2**20
    assert HeaderLimits().initial_read == 36 * 2880  # a constant (fits_header.INITIAL_READ), not a setting
    # Overridable by environment, and refused below a floor that would make every file fail (or zero limits)
    assert load_settings({"HEADER_MAX_CARDS": "100000"}).header_max_cards == 100000
    for name in ("HEADER_MAX_CARDS", "HEADER_MAX_BYTES", "HEADER_MAX_HDUS", "TAR_MAX_SCAN_BYTES"):
        with pytest.raises(ConfigurationError, match=name):
            load_settings({name: "0"})


def test_the_limits_are_documented() -> None:
    # docs/reliability.md's limits table has a row per setting, with its default
    doc = (Path(ROOT) / "docs" / "reliability.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", doc, flags=re.MULTILINE))
    assert rows == {
        "HEADER_MAX_CARDS": "5000 cards",
        "HEADER_MAX_BYTES": "2 MiB",
        "HEADER_MAX_HDUS": "16 HDUs",
        "TAR_MAX_SCAN_BYTES": "256 MiB",
    }
