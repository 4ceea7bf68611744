"""The archive emulator answers like the Science Archive (docs/science-archive-api.md), over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import moto.s3.models
import pytest
import requests
from moto import mock_aws

from lambda_ingest.local.archive_emulator import ArchiveEmulator

ADMIN = "test-admin-token"
USER = "test-user-token"
TIMEOUT = 5
BASENAME = "lsc1m005-fa01-20240101-0001-e00"


@pytest.fixture
def archive() -> Iterator[ArchiveEmulator]:
    with ArchiveEmulator(admin_token=ADMIN, user_token=USER) as emulator:
        yield emulator


def frame_payload(basename: str = BASENAME, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "basename": basename,
        "version_set": [{"key": uuid.uuid4().hex, "md5": uuid.uuid4().hex, "extension": ".fits.fz"}],
        "headers": {"SITEID": "lsc", "INSTRUME": "fa01"},
        "area": None,
        "related_frame_filenames": [],
        "configuration_type": "EXPOSE",
        "observation_day": "20240101",
        "observation_date": "2024-01-01T01:02:03",
        "public_date": "2024-01-01T01:02:03",
        "site_id": "lsc",
        "telescope_id": "1m0a",
        "instrument_id": "fa01",
        "proposal_id": "LCO2024A-001",
        "reduction_level": 0,
    }
    payload.update(overrides)
    return payload


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Token {token}"} if token else {}


def post(archive: ArchiveEmulator, path: str, payload: Any, token: str | None = ADMIN, **kwargs: Any):
    return requests.post(archive.api_root + path, json=payload, headers=auth(token), timeout=TIMEOUT, **kwargs)


def get(archive: ArchiveEmulator, path: str, token: str | None = ADMIN, **kwargs: Any):
    return requests.get(archive.api_root + path, headers=auth(token), timeout=TIMEOUT, **kwargs)


def is_html_500(response: requests.Response) -> bool:
    return response.status_code == 500 and response.headers["Content-Type"].startswith("text/html")


# --- authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "Authentication credentials were not provided."),
        ({"Authorization": "Token nope"}, 401, "Invalid token."),
        ({"Authorization": f"Token {USER}"}, 403, "You do not have permission to perform this action."),
    ],
)
def test_writes_need_an_admin_token(archive, headers, status, detail):
    # Given a valid frame and a missing, unknown or non-admin token
    # When it is posted
    response = requests.post(archive.api_root + "frames/", json=frame_payload(), headers=headers, timeout=TIMEOUT)
    # Then the archive refuses it with DRF's message and stores nothing
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert archive.frames() == []


def test_token_scheme_is_case_insensitive(archive):
    response = requests.post(
        archive.api_root + "frames/", json=frame_payload(), headers={"Authorization": f"token {ADMIN}"}, timeout=5
    )
    assert response.status_code == 201


@pytest.mark.parametrize(("token", "status"), [(None, 401), (USER, 403), ("nope", 401), (ADMIN, 200)])
def test_versions_listing_needs_a_staff_token(archive, token, status):
    assert get(archive, "versions/", token).status_code == status


def test_frames_can_be_read_anonymously_but_private_frames_only_by_admin(archive):
    # Given a public frame and one that becomes public in the future
    post(archive, "frames/", frame_payload("public-frame"))
    post(archive, "frames/", frame_payload("private-frame", public_date="2999-01-01T00:00:00"))
    # When anonymous, user and admin clients list frames
    anonymous, user, admin = (get(archive, "frames/", token).json() for token in (None, USER, ADMIN))
    # Then only the admin sees the private one
    assert [f["basename"] for f in anonymous["results"]] == ["public-frame"]
    assert user["count"] == 1
    assert admin["count"] == 2


# --- POST frames/: response shape and update -------------------------------------------------------------


def test_created_frame_answers_201_with_exactly_the_serializer_fields(archive):
    # Given a complete record
    payload = frame_payload(exposure_time=30.5, observation_id="123", request_id=456, unknown_key="ignored")
    # When it is posted
    response = post(archive, "frames/", payload)
    # Then the 201 body holds the serializer's fields, and not the write-only ones
    assert response.status_code == 201
    body = response.json()
    assert list(body) == [
        "id", "basename", "area", "related_frames", "version_set", "filename", "url", "reduction_level",
        "observation_day", "observation_date", "proposal_id", "instrument_id", "target_name", "site_id",
        "telescope_id", "exposure_time", "primary_optical_element", "public_date", "configuration_type",
        "observation_id", "request_id",
    ]  # fmt: skip
    assert "headers" not in body and "related_frame_filenames" not in body
    assert list(body["version_set"][0]) == ["id", "created", "key", "md5", "extension", "url"]
    assert body["version_set"][0]["key"] == payload["version_set"][0]["key"]
    assert body["filename"] == BASENAME + ".fits.fz"
    assert body["observation_day"] == "2024-01-01"
    assert body["observation_date"] == "2024-01-01T01:02:03Z"  # naive means UTC
    assert (body["observation_id"], body["request_id"], body["exposure_time"]) == (123, 456, 30.5)
    assert body["url"] == ""  # no S3 client: ocs_archive's dummy file store
    stored = archive.frames()[0]
    assert stored["headers"] == payload["headers"]
    assert not stored["hidden"]


def test_an_existing_basename_is_updated_with_a_new_version(archive):
    # Given a frame already registered as .fits.fz
    first = post(archive, "frames/", frame_payload())
    # When the .fits of the same basename is posted
    second = post(archive, "frames/", frame_payload(version_set=[{"key": "k2", "md5": "m2", "extension": ".fits"}]))
    # Then it is 201 again, the same frame, with both versions newest first and the newest extension
    assert second.status_code == 201
    body = second.json()
    assert body["id"] == first.json()["id"]
    assert [v["key"] for v in body["version_set"]] == ["k2", first.json()["version_set"][0]["key"]]
    assert body["filename"] == BASENAME + ".fits"
    assert get(archive, f"frames/?basename_exact={BASENAME}").json()["count"] == 1
    assert len(archive.versions()) == 2


def test_related_frames_become_hidden_placeholders(archive):
    # Given a frame naming two related frames
    response = post(archive, "frames/", frame_payload(related_frame_filenames=["bias-1", "dark-1"]))
    # Then two placeholder frames exist, linked but hidden from lists
    frames = {f["basename"]: f for f in archive.frames()}
    assert set(frames) == {BASENAME, "bias-1", "dark-1"}
    assert frames["bias-1"]["hidden"] and frames["dark-1"]["hidden"]
    assert response.json()["related_frames"] == [frames["bias-1"]["id"], frames["dark-1"]["id"]]
    assert get(archive, "frames/").json()["count"] == 1


# --- POST frames/: the 500 quirks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        frame_payload(version_set=None),
        {key: value for key, value in frame_payload().items() if key != "version_set"},
        frame_payload(version_set="abc"),
        frame_payload(version_set=["not a dict"]),
        frame_payload(basename="x" * 1001),
        frame_payload(area={"type": "Point", "coordinates": [10.0, 20.0]}),
        [frame_payload()],
    ],
    ids=[
        "version_set-null",
        "version_set-missing",
        "version_set-str",
        "version-not-dict",
        "basename-1001",
        "area-point",
        "list-body",
    ],
)
def test_inputs_that_crash_the_archive_give_an_html_500(archive, payload):
    response = post(archive, "frames/", payload)
    assert is_html_500(response)
    assert "Server Error (500)" in response.text
    assert [f for f in archive.frames() if not f["hidden"]] == []


def test_a_form_body_gives_an_html_500(archive):
    response = requests.post(archive.api_root + "frames/", data={"basename": "x"}, headers=auth(ADMIN), timeout=TIMEOUT)
    assert is_html_500(response)


def test_duplicate_md5_within_one_post_crashes_the_insert(archive):
    same = [{"key": "k1", "md5": "m", "extension": ".fits"}, {"key": "k2", "md5": "m", "extension": ".fits.fz"}]
    assert is_html_500(post(archive, "frames/", frame_payload(version_set=same)))
    assert archive.frames() == []


def test_invalid_json_is_a_drf_parse_error(archive):
    response = requests.post(
        archive.api_root + "frames/",
        data=b"{not json",
        headers={**auth(ADMIN), "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")


# --- POST frames/: hidden frames --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        frame_payload(version_set=[]),
        frame_payload(observation_date=None),
        {key: value for key, value in frame_payload().items() if key != "observation_date"},
    ],
    ids=["no-versions", "observation_date-null", "observation_date-missing"],
)
def test_frames_without_versions_or_observation_date_are_created_but_hidden(archive, payload):
    # When such a frame is posted
    response = post(archive, "frames/", payload)
    # Then it is created, but no list nor detail shows it
    assert response.status_code == 201
    frame_id = response.json()["id"]
    assert archive.frames()[0]["hidden"]
    assert get(archive, f"frames/?basename_exact={BASENAME}").json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
        "count_estimated": False,
    }
    assert get(archive, f"frames/{frame_id}/").status_code == 404


def test_a_frame_without_observation_date_has_no_url_field(archive):
    # The archive's Version.url raises AttributeError on a null observation_date, which DRF skips.
    body = post(archive, "frames/", frame_payload(observation_date=None)).json()
    assert "url" not in body and "url" not in body["version_set"][0]
    assert body["filename"] == BASENAME + ".fits.fz"


# --- POST frames/: DRF validation -----------------------------------------------------------------------


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in frame_payload().items() if k != key}


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        (without("basename"), {"basename": ["This field is required."]}),
        (frame_payload(basename="  "), {"basename": ["This field may not be blank."]}),
        (without("headers"), {"headers": ["This field is required."]}),
        (frame_payload(headers=None), {"headers": ["This field may not be null."]}),
        (without("area"), {"area": ["This field is required."]}),
        (without("related_frame_filenames"), {"related_frame_filenames": ["This field is required."]}),
        (frame_payload(related_frame_filenames=None), {"related_frame_filenames": ["This field may not be null."]}),
        (
            frame_payload(related_frame_filenames=["ok", ""]),
            {"related_frame_filenames": {"1": ["This field may not be blank."]}},
        ),
        (without("configuration_type"), {"configuration_type": ["This field is required."]}),
        (frame_payload(configuration_type="FOO"), {"configuration_type": ['"FOO" is not a valid choice.']}),
        (frame_payload(configuration_type="expose"), {"configuration_type": ['"expose" is not a valid choice.']}),
        (without("observation_day"), {"observation_day": ["This field is required."]}),
        (
            frame_payload(observation_day="01/01/2024"),
            {"observation_day": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD, YYYYMMDD."]},
        ),
        (
            frame_payload(observation_date="yesterday"),
            {
                "observation_date": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        (frame_payload(site_id="lsco"), {"site_id": ["Ensure this field has no more than 3 characters."]}),
        (frame_payload(telescope_id="1m0aa"), {"telescope_id": ["Ensure this field has no more than 4 characters."]}),
        (
            frame_payload(instrument_id="i" * 65),
            {"instrument_id": ["Ensure this field has no more than 64 characters."]},
        ),
        (
            frame_payload(proposal_id="p" * 201),
            {"proposal_id": ["Ensure this field has no more than 200 characters."]},
        ),
        (
            frame_payload(primary_optical_element="f" * 101),
            {"primary_optical_element": ["Ensure this field has no more than 100 characters."]},
        ),
        (frame_payload(exposure_time="long"), {"exposure_time": ["A valid number is required."]}),
        (frame_payload(reduction_level="high"), {"reduction_level": ["A valid integer is required."]}),
        (
            frame_payload(request_id=2147483648),
            {"request_id": ["Ensure this value is less than or equal to 2147483647."]},
        ),
        (frame_payload(observation_id=-1), {"observation_id": ["Ensure this value is greater than or equal to 0."]}),
        (
            frame_payload(area={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}),
            {"area": ["Invalid polygon: {'type': 'Polygon', 'coordinates': [[[0, 0], [1, 0], [1, 1]]]}"]},
        ),
        (
            frame_payload(version_set=[{"key": "k" * 33, "md5": "m", "extension": ".fits"}]),
            {"version_set": [{"key": ["Ensure this field has no more than 32 characters."]}]},
        ),
        (
            frame_payload(version_set=[{"key": "k", "md5": "m" * 33, "extension": ".f" * 11}]),
            {
                "version_set": [
                    {
                        "md5": ["Ensure this field has no more than 32 characters."],
                        "extension": ["Ensure this field has no more than 20 characters."],
                    }
                ]
            },
        ),
    ],
)
def test_invalid_fields_give_drf_400_bodies(archive, payload, errors):
    response = post(archive, "frames/", payload)
    assert (response.status_code, response.json()) == (400, errors)
    assert archive.frames() == []


def test_all_field_errors_are_collected_in_one_body(archive):
    response = post(archive, "frames/", frame_payload(site_id="lsco", configuration_type="FOO", observation_day="x"))
    assert response.status_code == 400
    assert set(response.json()) == {"site_id", "configuration_type", "observation_day"}


def test_lenient_inputs_are_accepted(archive):
    # Digit strings for ids, a dashed observation day, a closed polygon and a configured type
    area = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    payload = frame_payload(observation_id="42", request_id=None, observation_day="2024-01-01", area=area)
    body = post(archive, "frames/", payload).json()
    assert body["observation_id"] == 42
    assert body["area"] == {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]}


def test_configuration_types_are_configurable():
    with ArchiveEmulator(admin_token=ADMIN, configuration_types=("EXPOSE", "TARGET")) as archive:
        assert post(archive, "frames/", frame_payload(configuration_type="TARGET")).status_code == 201
        assert post(archive, "frames/", frame_payload("b", configuration_type="BIAS")).status_code == 400


@pytest.mark.parametrize("field", ["md5", "key"])
def test_md5_and_key_are_unique_across_the_archive(archive, field):
    # Given a frame whose version has some md5 and key
    first = frame_payload("frame-a")
    assert post(archive, "frames/", first).status_code == 201
    # When another frame reuses one of them
    version = {"key": "other-key", "md5": "other-md5", "extension": ".fits.fz"}
    version[field] = first["version_set"][0][field]
    response = post(archive, "frames/", frame_payload("frame-b", version_set=[version]))
    # Then the archive rejects it with the nested version error
    assert response.status_code == 400
    assert response.json() == {"version_set": [{field: [f"version with this {field} already exists."]}]}
    assert [f["basename"] for f in archive.frames()] == ["frame-a"]


# --- reads -------------------------------------------------------------------------------------------------


def test_versions_listing_ignores_the_md5_filter(archive):
    # Given two registered files
    post(archive, "frames/", frame_payload("frame-a"))
    post(archive, "frames/", frame_payload("frame-b"))
    # When versions/ is asked for an md5 nobody has
    body = get(archive, "versions/?md5=0123456789abcdef0123456789abcdef").json()
    # Then every version comes back (the archive's quirk)
    assert body["count"] == 2
    assert list(body["results"][0]) == ["id", "created", "key", "md5", "extension", "url"]


def test_basename_exact_counts_exactly_and_basename_is_a_substring_match(archive):
    for name in (BASENAME, BASENAME + "-extra", "other"):
        post(archive, "frames/", frame_payload(name))
    exact = get(archive, f"frames/?basename_exact={BASENAME}").json()
    assert exact["count"] == 1 and exact["results"][0]["basename"] == BASENAME
    assert get(archive, f"frames/?basename={BASENAME.upper()}").json()["count"] == 2


def test_frame_detail_and_missing_frame(archive):
    frame_id = post(archive, "frames/", frame_payload()).json()["id"]
    detail = get(archive, f"frames/{frame_id}/").json()
    assert detail["basename"] == BASENAME and detail["filename"] == BASENAME + ".fits.fz"
    assert get(archive, f"frames/{frame_id}/headers/").json() == {"data": frame_payload()["headers"]}
    missing = get(archive, "frames/999/")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})


def test_lists_are_paginated_with_limit_and_offset(archive):
    for index in range(3):
        post(archive, "frames/", frame_payload(f"frame-{index}"))
    page = get(archive, "frames/?limit=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["previous"] is None
    assert parse_qs(urlsplit(page["next"]).query) == {"limit": ["2"], "offset": ["2"]}
    last = requests.get(page["next"], headers=auth(ADMIN), timeout=TIMEOUT).json()
    assert len(last["results"]) == 1 and last["next"] is None


def test_frames_without_slash_answers_301_and_requests_then_creates_nothing(archive):
    # When a client posts to frames without the trailing slash, not following redirects
    response = post(archive, "frames", frame_payload(), allow_redirects=False)
    # Then it is a permanent redirect to the slash form, for every method and before authentication
    assert (response.status_code, response.headers["Location"]) == (301, "/frames/")
    assert requests.get(archive.api_root + "frames?limit=1", allow_redirects=False, timeout=5).status_code == 301
    # And requests, following it as a GET, gets a list and nothing is created
    followed = post(archive, "frames", frame_payload())
    assert followed.status_code == 200 and "results" in followed.json()
    assert archive.frames() == []


def test_unknown_paths_are_django_html_404s(archive):
    response = get(archive, "nothing/here/")
    assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/html")


# --- thumbnails --------------------------------------------------------------------------------------------


def test_thumbnails_are_registered_against_a_frame(archive):
    # Given a registered frame
    post(archive, "frames/", frame_payload())
    thumbnail = {"frame_basename": BASENAME, "size": "large", "basename": BASENAME + "-large"}
    # When its thumbnail is posted, key and extension inside version_set as the reference ingester does
    version = {"key": "t" * 32, "md5": "tm", "extension": ".jpg"}
    response = post(archive, "thumbnails/", {**thumbnail, "version_set": [version]})
    # Then it is 201 with the real archive's body (no id), and is stored against the frame
    assert response.status_code == 201
    assert set(response.json()) == {"frame", "size", "basename", "url", "key", "extension"}
    assert archive.thumbnails()[0]["frame_basename"] == BASENAME
    # And a second POST for the basename is an upsert: 201 again, the newest key wins
    again = post(archive, "thumbnails/", {**thumbnail, "key": "u" * 32, "extension": ".jpg"})
    assert again.status_code == 201 and [t["key"] for t in archive.thumbnails()] == ["u" * 32]
    # And the usual rules hold
    assert post(archive, "thumbnails/", {**thumbnail, "key": "k2", "extension": ".jpg"}, USER).status_code == 403
    bad = post(archive, "thumbnails/", {**thumbnail, "size": "huge", "key": "k" * 33, "extension": ".jpg"}).json()
    assert bad["size"] == ['"huge" is not a valid choice.']
    assert bad["key"] == ["Ensure this field has no more than 32 characters."]
    orphan = {**thumbnail, "frame_basename": "nope", "basename": "b", "key": "k3", "extension": ".jpg"}
    assert "frame_basename" in post(archive, "thumbnails/", orphan).json()


# --- download URLs -----------------------------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="archive")
        client.put_bucket_versioning(Bucket="archive", VersioningConfiguration={"Status": "Enabled"})
        yield client


def put_with_short_version_id(s3: Any, key: str, body: bytes) -> str:
    # moto issues 36-character VersionIds, which the archive rejects; AWS issues 32-character ones.
    with mock.patch.object(moto.s3.models.random, "uuid4", lambda: uuid.uuid4().hex):
        return s3.put_object(Bucket="archive", Key=key, Body=body)["VersionId"]


def test_the_presigned_url_downloads_the_archived_object(s3):
    # Given an object at the canonical key of a frame, with a 32-character version id
    version_id = put_with_short_version_id(s3, f"lsc/fa01/20240101/raw/{BASENAME}.fits.fz", b"SIMPLE  = T")
    with ArchiveEmulator(admin_token=ADMIN, s3_client=s3, bucket="archive") as archive:
        # When the frame is registered with that version
        version = {"key": version_id, "md5": "d41d8cd98f00b204e9800998ecf8427e", "extension": ".fits.fz"}
        created = post(archive, "frames/", frame_payload(version_set=[version]))
        detail = get(archive, f"frames/{created.json()['id']}/").json()
    # Then the frame's URL downloads exactly those bytes
    assert created.json()["url"]
    download = requests.get(detail["url"], timeout=TIMEOUT)
    assert (download.status_code, download.content) == (200, b"SIMPLE  = T")


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"reduction_level": 91}, f"/lsc/fa01/20240101/processed/{BASENAME}.fits.fz"),
        ({"basename": "lsc-fa01-bpm_20240101"}, "/lsc/fa01/bpm/lsc-fa01-bpm_20240101.fits.fz"),
    ],
)
def test_download_urls_follow_the_filestore_path_of_ocs_archive(s3, overrides, path):
    with ArchiveEmulator(admin_token=ADMIN, s3_client=s3, bucket="archive") as archive:
        body = post(archive, "frames/", frame_payload(**overrides)).json()
    url = urlsplit(body["url"])
    assert url.path == path
    assert parse_qs(url.query)["versionId"] == [body["version_set"][0]["key"]]


def test_every_version_url_uses_the_newest_extension(s3):
    with ArchiveEmulator(admin_token=ADMIN, s3_client=s3, bucket="archive") as archive:
        post(archive, "frames/", frame_payload())
        body = post(archive, "frames/", frame_payload(version_set=[{"key": "k", "md5": "m", "extension": ".fits"}]))
    paths = {urlsplit(v["url"]).path for v in body.json()["version_set"]}
    assert paths == {f"/lsc/fa01/20240101/raw/{BASENAME}.fits"}


# --- fault injection ---------------------------------------------------------------------------------------


def test_an_injected_5xx_is_an_html_page_and_then_the_archive_recovers(archive):
    # Given one injected 503 on posts to frames/
    archive.inject(status=503, path_prefix="frames/")
    # When a GET and two POSTs are made
    assert get(archive, "frames/").status_code == 200  # not matched: only POST
    failed = post(archive, "frames/", frame_payload())
    recovered = post(archive, "frames/", frame_payload())
    # Then only the first POST failed, with an HTML page, and nothing was stored by it
    assert failed.status_code == 503 and failed.headers["Content-Type"].startswith("text/html")
    assert recovered.status_code == 201
    assert len(archive.versions()) == 1 and archive.pending_faults == 0


@pytest.mark.parametrize("status", [408, 429])
def test_injected_408_and_429_are_drf_json(archive, status):
    archive.inject(status=status, count=2, method=None)
    responses = [get(archive, "frames/"), get(archive, "frames/"), get(archive, "frames/")]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert "detail" in responses[0].json()


def test_an_injected_delay_makes_a_client_time_out(archive):
    archive.inject(delay=0.5, method="GET")
    with pytest.raises(requests.Timeout):
        requests.get(archive.api_root + "frames/", timeout=0.1)
    assert get(archive, "frames/").status_code == 200


def test_an_injected_reset_drops_the_connection(archive):
    archive.inject(reset=True)
    with pytest.raises(requests.ConnectionError):
        post(archive, "frames/", frame_payload())
    assert ("POST", "/frames/", None) in archive.requests_seen
    assert post(archive, "frames/", frame_payload()).status_code == 201


def test_clear_faults_and_bad_injections(archive):
    archive.inject(status=500, count=3)
    archive.clear_faults()
    assert archive.pending_faults == 0
    with pytest.raises(ValueError):
        archive.inject()
    with pytest.raises(ValueError):
        archive.inject(status=500, reset=True)


def test_refusing_connections_then_serving_again_on_the_same_port(archive):
    # Given a client with a kept-alive connection
    with requests.Session() as session:
        assert session.get(archive.api_root + "frames/", timeout=TIMEOUT).status_code == 200
        port = archive.port
        # When the archive refuses connections
        # Then the client cannot connect
        with archive.refusing_connections(), pytest.raises(requests.ConnectionError):
            session.get(archive.api_root + "frames/", timeout=TIMEOUT)
        # And afterwards it is served again on the same port
        assert archive.port == port
        assert session.get(archive.api_root + "frames/", timeout=TIMEOUT).status_code == 200


def test_requests_seen_records_method_path_and_status_without_tokens(archive):
    post(archive, "frames/", frame_payload(), token=USER)
    get(archive, "versions/?md5=abc")
    assert archive.requests_seen == [("POST", "/frames/", 403), ("GET", "/versions/?md5=abc", 200)]
    assert USER not in repr(archive.requests_seen) and ADMIN not in repr(archive.requests_seen)


def test_file_database_persists_across_emulators(tmp_path):
    db = str(tmp_path / "archive.sqlite3")
    with ArchiveEmulator(admin_token=ADMIN, db_path=db) as archive:
        post(archive, "frames/", frame_payload())
    with ArchiveEmulator(admin_token=ADMIN, db_path=db) as archive:
        assert get(archive, f"frames/?basename_exact={BASENAME}").json()["count"] == 1


def test_only_loopback_is_allowed():
    with pytest.raises(ValueError):
        ArchiveEmulator(host="0.0.0.0")
