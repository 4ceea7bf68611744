"""The archive emulator answers what the engine asks as docs/science-archive-api.md says, over real HTTP.

Only the contract the engine relies on is guarded here: token rules, POST validation and error bodies,
thumbnails' upsert, the lookups, download URLs and fault injection.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from moto import mock_aws

from lambda_ingest.local.archive_emulator import ArchiveEmulator
from lambda_ingest.local.s3 import aws_style_version_ids

ADMIN, USER = "test-admin-token", "test-user-token"
NAME = "lsc1m005-fa01-20240101-0001-e00"
TIMEOUT = 5


@pytest.fixture
def archive() -> Iterator[ArchiveEmulator]:
    with ArchiveEmulator(admin_token=ADMIN, user_token=USER) as emulator:
        yield emulator


def version(extension: str = ".fits.fz", **overrides: str) -> dict[str, str]:
    return {"key": uuid.uuid4().hex, "md5": uuid.uuid4().hex, "extension": extension, **overrides}


def frame(basename: str = NAME, **overrides: Any) -> dict[str, Any]:
    """A record as the engine posts it."""
    payload = {
        "basename": basename,
        "version_set": [version()],
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
    return payload | overrides


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in frame().items() if k != name}


def post(archive: ArchiveEmulator, path: str, payload: Any, token: str | None = ADMIN, **kwargs: Any):
    headers = {"Authorization": f"Token {token}"} if token else {}
    return requests.post(archive.api_root + path, json=payload, headers=headers, timeout=TIMEOUT, **kwargs)


def get(archive: ArchiveEmulator, path: str, token: str | None = ADMIN, **kwargs: Any):
    headers = {"Authorization": f"Token {token}"} if token else {}
    return requests.get(archive.api_root + path, headers=headers, timeout=TIMEOUT, **kwargs)


def is_html(response: requests.Response, status: int) -> bool:
    return response.status_code == status and response.headers["Content-Type"].startswith("text/html")


# --- tokens ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status", "detail"),
    [
        (None, 401, "Authentication credentials were not provided."),
        ("nope", 401, "Invalid token."),
        (USER, 403, "You do not have permission to perform this action."),
    ],
)
def test_writes_and_versions_need_a_superuser_token(archive, token, status, detail) -> None:
    # Given a valid record and a missing, unknown or non-superuser token
    # When it is posted to frames/ and thumbnails/, and versions/ is read
    responses = [post(archive, "frames/", frame(), token), post(archive, "thumbnails/", frame(), token)]
    responses.append(get(archive, "versions/", token))
    # Then each answers DRF's refusal and nothing is stored
    assert {(r.status_code, r.json()["detail"]) for r in responses} == {(status, detail)}
    assert archive.frames() == []


def test_a_non_superuser_token_listing_frames_gets_the_archive_500(archive) -> None:
    # The archive asks the Observation Portal for that user's proposals; without a portal it crashes.
    assert is_html(get(archive, "frames/", USER), 500)


def test_the_token_scheme_is_case_insensitive(archive) -> None:
    headers = {"Authorization": f"token {ADMIN}"}
    assert (
        requests.post(archive.api_root + "frames/", json=frame(), headers=headers, timeout=TIMEOUT).status_code == 201
    )


# --- POST frames/ ------------------------------------------------------------------------------------------


def test_a_frame_is_created_and_then_updated_with_a_second_version(archive) -> None:
    # Given a frame registered as .fits.fz
    first = post(archive, "frames/", frame(exposure_time=30.5, observation_id="123", unknown_key="ignored"))
    # When the .fits of the same basename is posted
    second = post(archive, "frames/", frame(version_set=[version(".fits")], target_name="new"))
    # Then both are 201 with the serializer's fields (not the write-only ones), one frame, newest version first
    assert (first.status_code, second.status_code) == (201, 201)
    body = second.json()
    assert list(body) == [
        "id", "basename", "area", "related_frames", "version_set", "filename", "url", "reduction_level",
        "observation_day", "observation_date", "proposal_id", "instrument_id", "target_name", "site_id",
        "telescope_id", "exposure_time", "primary_optical_element", "public_date", "configuration_type",
        "observation_id", "request_id",
    ]  # fmt: skip
    assert body["id"] == first.json()["id"]
    assert [v["extension"] for v in body["version_set"]] == [".fits", ".fits.fz"]
    assert list(body["version_set"][0]) == ["id", "created", "key", "md5", "extension", "url"]
    assert (body["filename"], body["target_name"]) == (NAME + ".fits", "new")
    assert (body["observation_day"], body["observation_date"]) == ("2024-01-01", "2024-01-01T01:02:03Z")
    assert (first.json()["observation_id"], first.json()["exposure_time"]) == (123, 30.5)
    [stored] = archive.frames()
    assert stored["headers"] == frame()["headers"] and len(archive.versions()) == 2


def test_each_version_url_is_its_own_under_the_frames_current_filename(archive) -> None:
    # Given a frame with a .fits.fz and then a .fits version
    post(archive, "frames/", frame())
    body = post(archive, "frames/", frame(version_set=[version(".fits")], reduction_level=91)).json()
    # Then every version's URL names its own version id, at the path of the newest filename and level
    for item in body["version_set"]:
        url = urlsplit(item["url"])
        assert url.path == f"/lsc/fa01/20240101/processed/{NAME}.fits"
        assert parse_qs(url.query)["versionId"] == [item["key"]]
        assert "Signature" in url.query or "X-Amz-Signature" in url.query  # presigned
    assert body["url"] == body["version_set"][0]["url"]


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        (without("basename"), {"basename": ["This field is required."]}),
        (frame(basename=" "), {"basename": ["This field may not be blank."]}),
        (frame(headers=None), {"headers": ["This field may not be null."]}),
        (without("area"), {"area": ["This field is required."]}),
        (frame(area={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}), "area"),
        (frame(related_frame_filenames=None), {"related_frame_filenames": ["This field may not be null."]}),
        (
            frame(related_frame_filenames=["a", ""]),
            {"related_frame_filenames": {"1": ["This field may not be blank."]}},
        ),
        (frame(configuration_type="expose"), {"configuration_type": ['"expose" is not a valid choice.']}),
        (frame(observation_day="01/01/2024"), "observation_day"),
        (frame(observation_date="yesterday"), "observation_date"),
        (frame(site_id="lsco"), {"site_id": ["Ensure this field has no more than 3 characters."]}),
        (frame(telescope_id="1m0aa"), {"telescope_id": ["Ensure this field has no more than 4 characters."]}),
        (frame(instrument_id="i" * 65), {"instrument_id": ["Ensure this field has no more than 64 characters."]}),
        (frame(proposal_id="p" * 201), {"proposal_id": ["Ensure this field has no more than 200 characters."]}),
        (frame(target_name="t" * 201), {"target_name": ["Ensure this field has no more than 200 characters."]}),
        (
            frame(primary_optical_element="f" * 101),
            {"primary_optical_element": ["Ensure this field has no more than 100 characters."]},
        ),
        (frame(request_id=2147483648), {"request_id": ["Ensure this value is less than or equal to 2147483647."]}),
        (frame(observation_id=-1), {"observation_id": ["Ensure this value is greater than or equal to 0."]}),
        (
            frame(version_set=[version(key="k" * 33)]),
            {"version_set": [{"key": ["Ensure this field has no more than 32 characters."]}]},
        ),
        (
            frame(version_set=[version(md5="m" * 33, extension=".f" * 11)]),
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
def test_invalid_records_get_drf_400_bodies_from_the_contracts_field_table(archive, payload, errors) -> None:
    # `errors` is the whole DRF body, or the only field named in it (where DRF's message is long)
    response = post(archive, "frames/", payload)
    assert response.status_code == 400
    body = response.json()
    assert (body == errors) if isinstance(errors, dict) else (list(body) == [errors])
    assert archive.frames() == []


@pytest.mark.parametrize("field", ["md5", "key"])
def test_md5_and_key_are_unique_across_the_archive(archive, field) -> None:
    # Given a frame whose version has some md5 and key
    first = frame("frame-a")
    post(archive, "frames/", first)
    # When another frame's version reuses one of them
    response = post(
        archive, "frames/", frame("frame-b", version_set=[version(**{field: first["version_set"][0][field]})])
    )
    # Then the archive answers the nested version error the engine recognises
    assert (response.status_code, response.json()) == (
        400,
        {"version_set": [{field: [f"version with this {field} already exists."]}]},
    )
    assert [f["basename"] for f in archive.frames()] == ["frame-a"]


@pytest.mark.parametrize(
    "payload",
    [
        without("version_set"),
        frame(version_set=None),
        frame(version_set=["not a dict"]),
        frame(version_set=[version(md5="same"), version(md5="same")]),
        frame(basename="x" * 1001),
        frame(area={"type": "Point", "coordinates": [10.0, 20.0]}),
    ],
    ids=["version_set-missing", "version_set-null", "version-not-dict", "md5-twice", "basename-1001", "area-point"],
)
def test_inputs_that_crash_the_archive_get_an_html_500(archive, payload) -> None:
    assert is_html(post(archive, "frames/", payload), 500)
    assert archive.frames() == []


def test_a_form_body_gets_an_html_500(archive) -> None:
    headers = {"Authorization": f"Token {ADMIN}"}
    assert is_html(
        requests.post(archive.api_root + "frames/", data={"basename": NAME}, headers=headers, timeout=5), 500
    )


@pytest.mark.parametrize(
    "payload", [frame(version_set=[]), frame(observation_date=None)], ids=["no-version", "no-date"]
)
def test_frames_without_a_version_or_observation_date_are_created_but_hidden(archive, payload) -> None:
    assert post(archive, "frames/", payload).status_code == 201
    assert get(archive, f"frames/?basename_exact={NAME}").json()["count"] == 0
    assert archive.frames()[0]["hidden"]


def test_related_frames_become_hidden_placeholders(archive) -> None:
    body = post(archive, "frames/", frame(related_frame_filenames=["bias-1"])).json()
    frames = {f["basename"]: f for f in archive.frames()}
    assert frames["bias-1"]["hidden"] and body["related_frames"] == [frames["bias-1"]["id"]]


# --- lookups ------------------------------------------------------------------------------------------------


def test_basename_exact_finds_exactly_that_frame(archive) -> None:
    for name in (NAME, NAME + "-extra", "other"):
        post(archive, "frames/", frame(name))
    body = get(archive, f"frames/?basename_exact={NAME}").json()
    assert (body["count"], [f["basename"] for f in body["results"]]) == (1, [NAME])
    assert "md5" in body["results"][0]["version_set"][0]


def test_versions_ignores_its_md5_filter_and_is_paginated(archive) -> None:
    # Given three registered files
    for name in ("a", "b", "c"):
        post(archive, "frames/", frame(name))
    # When versions/ is asked for an md5 nobody has, two at a time
    page = get(archive, "versions/?md5=0123456789abcdef0123456789abcdef&limit=2").json()
    # Then every version comes back (the live archive's quirk), on pages
    assert (page["count"], len(page["results"]), page["previous"]) == (3, 2, None)
    assert parse_qs(urlsplit(page["next"]).query) == {
        "limit": ["2"],
        "md5": ["0123456789abcdef0123456789abcdef"],
        "offset": ["2"],
    }
    last = requests.get(page["next"], headers={"Authorization": f"Token {ADMIN}"}, timeout=TIMEOUT).json()
    assert len(last["results"]) == 1 and last["next"] is None


def test_a_post_without_the_slash_is_redirected_and_a_wrong_api_root_is_an_html_404(archive) -> None:
    # Django redirects before authentication; requests, following it as a GET, creates nothing
    response = post(archive, "frames", frame(), token=None, allow_redirects=False)
    assert (response.status_code, response.headers["Location"]) == (301, "/frames/")
    assert post(archive, "frames", frame()).status_code == 200 and archive.frames() == []
    assert is_html(post(archive, "api/frames/", frame()), 404)


# --- thumbnails -------------------------------------------------------------------------------------------------


def thumbnail(key: str, frame_basename: str = NAME) -> dict[str, Any]:
    """ocs_ingester's thumbnail body: a frame record whose version is the thumbnail's, plus its frame and size."""
    return frame(NAME + "-large", version_set=[version(".jpg", key=key)], frame_basename=frame_basename, size="large")


def test_a_thumbnail_is_an_upsert_by_its_basename_answered_without_id(archive) -> None:
    # Given a registered frame
    post(archive, "frames/", frame())
    # When its thumbnail is posted twice, with two keys
    first, second = (post(archive, "thumbnails/", thumbnail(key)) for key in ("a" * 32, "b" * 32))
    # Then both are 201 with the thumbnail's fields and no id, and the newest key replaced the first
    assert (first.status_code, second.status_code) == (201, 201)
    body = second.json()
    assert list(body) == ["frame", "size", "basename", "url", "key", "extension"]
    assert (body["frame"]["basename"], body["basename"], body["key"]) == (NAME, NAME + "-large", "b" * 32)
    assert urlsplit(body["url"]).path == f"/lsc/fa01/20240101/thumbnails/{NAME}-large.jpg"
    [stored] = archive.thumbnails()
    assert (stored["frame_basename"], stored["key"], stored["size"]) == (NAME, "b" * 32, "large")
    assert len(archive.versions()) == 1  # the archive keeps no thumbnail versions


def test_a_thumbnail_of_a_missing_frame_creates_it_hidden(archive) -> None:
    assert post(archive, "thumbnails/", thumbnail("c" * 32, frame_basename="later-frame")).status_code == 201
    [placeholder] = archive.frames()
    assert (placeholder["basename"], placeholder["hidden"]) == ("later-frame", True)


def test_a_thumbnail_body_is_validated_as_a_frame_then_its_size(archive) -> None:
    bad_frame = post(archive, "thumbnails/", thumbnail("d" * 32) | {"configuration_type": ""})
    bad_size = post(archive, "thumbnails/", thumbnail("e" * 32) | {"size": "huge"})
    assert (bad_frame.status_code, bad_frame.json()) == (400, {"configuration_type": ['"" is not a valid choice.']})
    assert (bad_size.status_code, bad_size.json()) == (400, {"size": ['"huge" is not a valid choice.']})
    assert archive.thumbnails() == []


# --- download URLs ----------------------------------------------------------------------------------------------


def test_the_presigned_url_downloads_the_archived_version() -> None:
    with aws_style_version_ids(), mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="archive")
        s3.put_bucket_versioning(Bucket="archive", VersioningConfiguration={"Status": "Enabled"})
        # Given an object at the frame's canonical key, with a 32-character version id
        key = s3.put_object(Bucket="archive", Key=f"lsc/fa01/20240101/raw/{NAME}.fits.fz", Body=b"SIMPLE")["VersionId"]
        with ArchiveEmulator(admin_token=ADMIN, s3_client=s3, bucket="archive") as archive:
            # When the frame is registered with that version
            body = post(archive, "frames/", frame(version_set=[version(key=key)])).json()
        # Then its version's URL downloads exactly those bytes
        assert requests.get(body["version_set"][0]["url"], timeout=TIMEOUT).content == b"SIMPLE"


# --- fault injection --------------------------------------------------------------------------------------------


def test_an_injected_status_answers_instead_then_the_archive_recovers(archive) -> None:
    # Given one 503 on POSTs to frames/ and two 429s on anything
    archive.inject(status=503, path_prefix="frames/")
    archive.inject(status=429, count=2, method=None)
    # When the archive is called
    responses = [post(archive, "frames/", frame()), get(archive, "frames/"), post(archive, "frames/", frame())]
    responses.append(post(archive, "frames/", frame()))
    # Then the faults answered in order, 5xx as an HTML page, 429 as DRF JSON, and nothing was stored by them
    assert [r.status_code for r in responses] == [503, 429, 429, 201]
    assert is_html(responses[0], 503) and responses[1].headers["Retry-After"] == "1"
    assert len(archive.versions()) == 1 and archive.pending_faults == 0


def test_a_fault_after_the_commit_stores_the_frame_and_answers_500(archive) -> None:
    archive.inject(status=500, after=True, path_prefix="frames/")
    assert is_html(post(archive, "frames/", frame()), 500)
    assert len(archive.versions()) == 1


def test_an_injected_delay_and_reset(archive) -> None:
    archive.inject(delay=0.5, method="GET")
    with pytest.raises(requests.Timeout):
        requests.get(archive.api_root + "frames/", timeout=0.1)
    archive.inject(reset=True)
    with pytest.raises(requests.ConnectionError):
        post(archive, "frames/", frame())
    assert ("POST", "/frames/", None) in archive.requests_seen
    assert post(archive, "frames/", frame()).status_code == 201


@pytest.mark.parametrize("kwargs", [{}, {"status": 500, "reset": True}, {"after": True}, {"status": 500, "count": 0}])
def test_impossible_faults_are_refused(archive, kwargs) -> None:
    with pytest.raises(ValueError):
        archive.inject(**kwargs)


def test_refusing_connections_then_serving_again_on_the_same_port(archive) -> None:
    with requests.Session() as session:  # a kept-alive connection too
        assert session.get(archive.api_root + "frames/", timeout=TIMEOUT).status_code == 200
        port = archive.port
        with archive.refusing_connections(), pytest.raises(requests.ConnectionError):
            session.get(archive.api_root + "frames/", timeout=TIMEOUT)
        assert archive.port == port
        assert session.get(archive.api_root + "frames/", timeout=TIMEOUT).status_code == 200


def test_requests_seen_has_method_path_and_status_never_tokens(archive) -> None:
    post(archive, "frames/", frame(), token=USER)
    get(archive, "versions/?md5=abc")
    assert archive.requests_seen == [("POST", "/frames/", 403), ("GET", "/versions/?md5=abc", 200)]
    assert USER not in repr(archive.requests_seen) and ADMIN not in repr(archive.requests_seen)


def test_a_restart_begins_with_an_empty_archive_and_only_loopback_is_served(archive) -> None:
    post(archive, "frames/", frame())
    archive.stop()
    archive.start()
    assert archive.frames() == []
    with pytest.raises(ValueError):
        ArchiveEmulator(host="0.0.0.0")
