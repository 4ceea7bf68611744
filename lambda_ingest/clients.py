"""The one factory for boto3 clients, the archive HTTP session and the pool for presigned S3 GETs.

Clients are created on first use (not at import) so a test's moto mock, or the local stack's
environment, is in place before any client exists; `reset_clients()` forgets them.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from lambda_ingest.errors import ConfigurationError
from lambda_ingest.settings import get_settings, on_reset

_lock = threading.Lock()

# Not settings (tests override them in code): S3 timeouts (seconds) and botocore's attempts per call
# (standard retry mode: throttling and 5xx answers are retried with backoff inside the one call).
S3_CONNECT_TIMEOUT = 5.0
S3_READ_TIMEOUT = 60.0
S3_MAX_ATTEMPTS = 5


@lru_cache(maxsize=8)
def _client(service: str) -> Any:
    settings = get_settings()
    config = Config(
        connect_timeout=S3_CONNECT_TIMEOUT,
        read_timeout=S3_READ_TIMEOUT,
        # total_max_attempts counts the first attempt too (botocore's "max_attempts" counts only retries).
        retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
        # Copies run parts in parallel; keep enough pooled connections for them.
        max_pool_connections=max(10, settings.copy_concurrency * 2),
        signature_version="s3v4" if service == "s3" else None,
    )
    # S3_ENDPOINT_URL is ocs_ingester's name and applies to S3 only; other services honour
    # boto3's own AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>.
    endpoint = settings.s3_endpoint_url if service == "s3" else None
    return new_session().client(service, region_name=settings.aws_region, endpoint_url=endpoint, config=config)


@lru_cache(maxsize=1)
def _model_loader() -> Any:
    return botocore.session.get_session().get_component("data_loader")


def new_session() -> boto3.session.Session:
    """A fresh boto3 session (credentials and region resolved anew) sharing one loader of service models.

    Parsing a service's JSON model is most of a client's creation cost (~60 ms for S3); the models never
    change within a process, so every session reuses them, while credentials are still read per session.
    """
    core = botocore.session.get_session()
    core.register_component("data_loader", _model_loader())
    return boto3.session.Session(botocore_session=core)


def client(service: str) -> Any:
    """A cached, thread-safe-to-share boto3 client for `service` ("s3", "sqs", ...)."""
    with _lock:
        return _client(service)


def s3() -> Any:
    return client("s3")


@lru_cache(maxsize=1)
def _http_pool() -> Any:
    import urllib3

    settings = get_settings()
    # More kept-alive connections than the md5 stream keeps ranges in flight (store.MD5_CONNECTIONS, 16).
    return urllib3.PoolManager(
        maxsize=max(10, settings.copy_concurrency * 2),
        # A pooled connection the server closed while it sat idle (S3 closes idle connections; a frozen
        # Lambda's pool wakes up stale) is tried again at once on a new one, as botocore does. Any other
        # failure is retried by the caller, alone, after a pause.
        retries=urllib3.Retry(total=1, connect=1, read=1, status=0, other=0, redirect=0, raise_on_status=False),
        timeout=urllib3.Timeout(connect=S3_CONNECT_TIMEOUT, read=S3_READ_TIMEOUT),
    )


def http_pool() -> Any:
    """The plain HTTP connection pool behind presigned S3 requests (the md5 stream's byte ranges)."""
    with _lock:
        return _http_pool()


def reset_clients() -> None:
    with _lock:
        _client.cache_clear()
        _http_pool.cache_clear()
        _archive.cache_clear()
        _secrets_provider.cache_clear()


on_reset(reset_clients)  # new settings (endpoint, timeouts, token) mean new clients


_SECRET_MAX_AGE = 300  # seconds; a rotated token is picked up within five minutes


def archive_token(force_fetch: bool = False) -> str:
    """AUTH_TOKEN when set (local use), else the secret at AUTH_TOKEN_SECRET_ARN (cached by Powertools;
    `force_fetch` reads Secrets Manager again and refreshes that cache, for a token the archive refused)."""
    settings = get_settings()
    if settings.auth_token:
        return settings.auth_token
    if not settings.auth_token_secret_arn:
        return ""
    provider = _secrets_provider()
    try:
        value = provider.get(settings.auth_token_secret_arn, max_age=_SECRET_MAX_AGE, force_fetch=force_fetch)
    except Exception as exc:  # Powertools' GetParameterError wraps every Secrets Manager failure
        raise ConfigurationError(
            f"archive token secret {settings.auth_token_secret_arn} unreadable: {type(exc.__cause__ or exc).__name__}"
        ) from None
    return str(value).strip()


@lru_cache(maxsize=1)
def _secrets_provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=client("secretsmanager"))


def archive() -> Any:
    """The Science Archive client for the current settings and token."""
    token = archive_token()
    with _lock:
        return _archive(token)


@lru_cache(maxsize=2)
def _archive(token: str) -> Any:
    from lambda_ingest.archive import ArchiveClient

    # On a 401/403 the client reads the secret again once (a rotated token), bypassing the cache.
    return ArchiveClient(get_settings(), token, refresh_token=lambda: archive_token(force_fetch=True))
