"""S3 error translation: every botocore error the engine meets -> the project's error class and reason.

The ClientErrors are built the way botocore builds them: S3's wire answer (status, headers, XML body; a
HEAD has no body) parsed by botocore's own rest-xml parser against the operation's model, so the table
checks the codes and statuses the engine really sees (a HEAD's 404 carries Code "404", not "NoSuchKey").
"""

from __future__ import annotations

import botocore.session
import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.parsers import create_parser

from lambda_ingest import errors, store
from lambda_ingest.compat import FAMILIES
from lambda_ingest.store import translate

WHAT = "GET s3://landing/f.fits"
_MODEL = botocore.session.get_session().get_service_model("s3")


def s3_error(operation: str, status: int, code: str | None = None, message: str = "") -> Exception:
    """The ClientError botocore raises for S3's answer `status` (+ an <Error> body unless `code` is None)."""
    from botocore.exceptions import ClientError

    body = b""
    if code is not None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            "<RequestId>R</RequestId><HostId>H</HostId></Error>"
        ).encode()
    wire = {"status_code": status, "headers": {"x-amz-request-id": "R"}, "body": body}
    parsed = create_parser("rest-xml").parse(wire, _MODEL.operation_model(operation).output_shape)
    return ClientError(parsed, operation)


GONE = "no such object or version"
CHANGED = "the object changed since the event"

# (operation, status, code or None for a body-less answer, message) -> (class, reason after "WHAT: ")
CLIENT_ERRORS = {
    # the object or its version is gone: skipped
    "head-404": ("HeadObject", 404, None, "", errors.ObjectGoneError, GONE),
    "NoSuchKey": ("GetObject", 404, "NoSuchKey", "The specified key does not exist.", errors.ObjectGoneError, GONE),
    "NoSuchVersion": ("GetObject", 404, "NoSuchVersion", "no such version", errors.ObjectGoneError, GONE),
    # overwritten after the event (the IfMatch / CopySourceIfMatch pin): skipped
    "PreconditionFailed": ("CopyObject", 412, "PreconditionFailed", "unmet", errors.ObjectChangedError, CHANGED),
    "head-412": ("HeadObject", 412, None, "", errors.ObjectChangedError, CHANGED),
    # throttling and server errors: retried later
    "SlowDown": ("GetObject", 503, "SlowDown", "Please reduce your request rate.", errors.StorageUnavailableError,
                 "S3 answered SlowDown"),
    "InternalError": ("CopyObject", 500, "InternalError", "internal", errors.StorageUnavailableError,
                      "S3 answered InternalError"),
    "ServiceUnavailable": ("UploadPartCopy", 503, "ServiceUnavailable", "busy", errors.StorageUnavailableError,
                           "S3 answered ServiceUnavailable"),
    "RequestTimeout": ("GetObject", 400, "RequestTimeout", "idle", errors.StorageUnavailableError,
                       "S3 answered RequestTimeout"),
    "head-503": ("HeadObject", 503, None, "", errors.StorageUnavailableError, "S3 answered 503"),
    "head-500": ("HeadObject", 500, None, "", errors.StorageUnavailableError, "S3 answered 500"),
    "proxy-502": ("GetObject", 502, None, "", errors.StorageUnavailableError, "S3 answered 502"),
    "gateway-504": ("CopyObject", 504, None, "", errors.StorageUnavailableError, "S3 answered 504"),
    "too-many-429": ("GetObject", 429, None, "", errors.StorageUnavailableError, "S3 answered 429"),
    # the deployment's fault: a system fault, never a file's
    "AccessDenied": ("GetObject", 403, "AccessDenied", "Access Denied", errors.StorageAccessError,
                     "S3 refused (AccessDenied): Access Denied"),
    "head-403": ("HeadObject", 403, None, "", errors.StorageAccessError, "S3 refused (403): Forbidden"),
    "NoSuchBucket": ("CopyObject", 404, "NoSuchBucket", "The specified bucket does not exist",
                     errors.StorageAccessError, "S3 refused (NoSuchBucket): The specified bucket does not exist"),
    "ExpiredToken": ("PutObjectTagging", 400, "ExpiredToken", "The provided token has expired.",
                     errors.StorageAccessError, "S3 refused (ExpiredToken): The provided token has expired."),
    "InvalidAccessKeyId": ("GetObject", 403, "InvalidAccessKeyId", "no such key id", errors.StorageAccessError,
                           "S3 refused (InvalidAccessKeyId): no such key id"),
    "SignatureDoesNotMatch": ("GetObject", 403, "SignatureDoesNotMatch", "bad signature", errors.StorageAccessError,
                              "S3 refused (SignatureDoesNotMatch): bad signature"),
    "InvalidToken": ("CopyObject", 400, "InvalidToken", "malformed token", errors.StorageAccessError,
                     "S3 refused (InvalidToken): malformed token"),
    "KMS.DisabledException": ("CopyObject", 400, "KMS.DisabledException", "key/k is disabled.",
                              errors.StorageAccessError, "S3 refused (KMS.DisabledException): key/k is disabled."),
    "KMS.NotFoundException": ("GetObject", 400, "KMS.NotFoundException", "Invalid keyId", errors.StorageAccessError,
                              "S3 refused (KMS.NotFoundException): Invalid keyId"),
    "InvalidObjectState": ("GetObject", 403, "InvalidObjectState", "archived", errors.StorageAccessError,
                           "S3 refused (InvalidObjectState): archived"),
    "AllAccessDisabled": ("GetObject", 403, "AllAccessDisabled", "disabled", errors.StorageAccessError,
                          "S3 refused (AllAccessDisabled): disabled"),
    "AccountProblem": ("CopyObject", 403, "AccountProblem", "account", errors.StorageAccessError,
                       "S3 refused (AccountProblem): account"),
    "TokenRefreshRequired": ("GetObject", 400, "TokenRefreshRequired", "refresh", errors.StorageAccessError,
                             "S3 refused (TokenRefreshRequired): refresh"),
    "Throttling": ("GetObject", 400, "Throttling", "Rate exceeded", errors.StorageUnavailableError,
                   "S3 answered Throttling"),
    # anything else S3 refuses is the deployment's to look at, not the file's
    "InvalidRequest": ("CopyObject", 400, "InvalidRequest", "The specified copy source is larger than 5 GB",
                       errors.StorageAccessError,
                       "S3 refused (InvalidRequest): The specified copy source is larger than 5 GB"),
    "multi-line-message": ("GetObject", 403, "AccessDenied", "Access\n   Denied\tby policy",
                           errors.StorageAccessError, "S3 refused (AccessDenied): Access Denied by policy"),
}  # fmt: skip


@pytest.mark.parametrize(("operation", "status", "code", "message", "expected", "reason"), CLIENT_ERRORS.values(),
                         ids=CLIENT_ERRORS.keys())  # fmt: skip
def test_client_error_becomes_its_class_with_a_one_line_reason(
    operation: str, status: int, code: str | None, message: str, expected: type, reason: str
) -> None:
    # Given the ClientError botocore raises for S3's answer
    exc = s3_error(operation, status, code, message)
    # When the store translates it
    got = translate(exc, WHAT)
    # Then it is exactly the expected class (not a parent), its reason one line naming the request
    assert type(got) is expected
    assert got.reason.startswith(f"{WHAT}: {reason}")
    assert "\n" not in str(got)


def test_clock_skew_is_a_system_fault() -> None:
    # S3 answers RequestTimeTooSkewed with 403 when the function's clock is off: the system's fault (retried
    # and alarmed), not the file's
    got = translate(s3_error("GetObject", 403, "RequestTimeTooSkewed", "too skewed"), WHAT)
    assert type(got) is errors.StorageAccessError


def test_a_vanished_multipart_upload_is_not_a_vanished_object() -> None:
    got = translate(s3_error("UploadPartCopy", 404, "NoSuchUpload", "The upload does not exist"), WHAT)
    assert not isinstance(got, errors.SkippedError)


ENDPOINT = "https://landing.s3.amazonaws.com/f.fits"
IO_ERRORS = {
    "ReadTimeoutError": ReadTimeoutError(endpoint_url=ENDPOINT),
    "ConnectTimeoutError": ConnectTimeoutError(endpoint_url=ENDPOINT),
    "EndpointConnectionError": EndpointConnectionError(endpoint_url=ENDPOINT),
    "ConnectionClosedError": ConnectionClosedError(endpoint_url=ENDPOINT),
    "ResponseStreamingError": ResponseStreamingError(error="Connection broken: IncompleteRead"),
    "ConnectionResetError": ConnectionResetError(104, "Connection reset by peer"),  # a body read's own OSError
}


@pytest.mark.parametrize("exc", IO_ERRORS.values(), ids=IO_ERRORS.keys())
def test_network_errors_are_transient_and_named(exc: Exception) -> None:
    # Given a timeout, a refused or dropped connection or a broken body read, When translated
    got = translate(exc, WHAT)
    # Then it is retried later, and the reason names the error's class (not its multi-line text)
    assert type(got) is errors.StorageUnavailableError
    assert got.reason == f"{WHAT}: {type(exc).__name__}"


def test_missing_credentials_are_a_system_fault() -> None:
    got = translate(NoCredentialsError(), WHAT)
    assert isinstance(got, errors.SystemFaultError)


def test_an_error_outside_botocore_is_left_as_it_is() -> None:
    # Given a bug (not an S3 answer), When translated, Then it is returned unchanged for the caller to see
    bug = KeyError("ETag")
    assert translate(bug, WHAT) is bug


GET_ERRORS = {name: row for name, row in CLIENT_ERRORS.items() if row[0] == "GetObject" and row[2] is not None}


@pytest.mark.parametrize(("operation", "status", "code", "message", "expected", "reason"), GET_ERRORS.values(),
                         ids=GET_ERRORS.keys())  # fmt: skip
def test_a_presigned_range_get_refused_is_translated_as_botocore_would(
    operation: str, status: int, code: str, message: str, expected: type, reason: str
) -> None:
    # Given S3's error answer to one of the md5 stream's presigned range GETs (plain HTTP, no botocore parser)
    body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>R</RequestId></Error>".encode()
    # When the store reads it
    got = store._refused(status, body, WHAT)
    # Then the class and reason are those of the same answer to botocore's GetObject: the file's fault and the
    # system's stay apart, and a caller of ocs_ingester's API catches it by one of its four families
    assert type(got) is expected and type(got) is type(translate(s3_error(operation, status, code, message), WHAT))
    assert got.reason.startswith(f"{WHAT}: {reason}")
    assert isinstance(got, FAMILIES)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, errors.StorageUnavailableError), (503, errors.StorageUnavailableError), (403, errors.StorageAccessError),
     (404, errors.ObjectGoneError), (412, errors.ObjectChangedError), (200, errors.StorageAccessError)],
)  # fmt: skip
def test_a_presigned_range_get_answered_without_an_error_body_is_classed_by_status(status: int, expected: type):
    # Given an answer with no S3 error document (a proxy's 5xx, a HEAD-like 404, a range the server ignored)
    got = store._refused(status, b"", WHAT)
    # Then its status decides: transient, the deployment's fault, gone, changed; never the file's
    assert type(got) is expected
