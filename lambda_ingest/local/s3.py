"""A local S3 (and SQS, DynamoDB) that issues AWS-style 32-character object version ids.

AWS S3 VersionIds are 32 characters; moto issues 36-character UUIDs, which the Science Archive rejects
(its version key holds at most 32). moto draws every S3 version id (put, copy, multipart complete,
delete marker) from ``moto.s3.models.random.uuid4()``; :func:`install_aws_style_version_ids` swaps that
module attribute for a proxy whose ``uuid4()`` gives 32 URL-safe characters. The proxy draws from moto's
own seeded generator, so ``moto`` seeding still makes ids reproducible. It applies to in-process
``mock_aws`` and to a :class:`LocalS3Server` in the same process alike (they share the module).

The same install also makes moto serve a ranged GET in time proportional to the range
(:func:`install_ranged_reads`): moto copies the whole object out of its buffer and then slices it, so the
header read of a 1 GB frame cost ~0.5 s locally, and every ranged design looked worse than it is on S3.
"""

from __future__ import annotations

import string
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from types import TracebackType
from typing import Any

__all__ = [
    "AWS_VERSION_ID_LENGTH",
    "LocalS3Server",
    "aws_style_version_ids",
    "aws_style_version_ids_installed",
    "install_aws_style_version_ids",
    "install_ranged_reads",
    "uninstall_aws_style_version_ids",
]

AWS_VERSION_ID_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits + "._"

_lock = threading.Lock()


class _AwsStyleVersionIdRandom:
    """Stands in for ``moto.s3.models.random``: all of moto's random API, except 32-char ``uuid4()``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def uuid4(self) -> str:
        # moto only ever formats these with str(). Letters, digits, "." and "_" as in real ids: URL-safe
        # and never a leading "-" that a command line would take for an option.
        return "".join(self._inner.choice(_ALPHABET) for _ in range(AWS_VERSION_ID_LENGTH))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def aws_style_version_ids_installed() -> bool:
    """Whether moto's S3 currently issues 32-character version ids."""
    import moto.s3.models as s3_models

    return isinstance(s3_models.random, _AwsStyleVersionIdRandom)


def install_aws_style_version_ids() -> None:
    """Make moto's S3 issue 32-character version ids (idempotent)."""
    import moto.s3.models as s3_models  # imported lazily: moto is a test/demo dependency only

    with _lock:
        if not isinstance(s3_models.random, _AwsStyleVersionIdRandom):
            s3_models.random = _AwsStyleVersionIdRandom(s3_models.random)
    install_ranged_reads()


def uninstall_aws_style_version_ids() -> None:
    """Restore moto's own (36-character UUID) version ids (idempotent)."""
    import moto.s3.models as s3_models

    with _lock:
        current = s3_models.random
        if isinstance(current, _AwsStyleVersionIdRandom):
            s3_models.random = current._inner


_ranged = threading.local()  # set while moto's get_object serves a request with one byte range


class _RangeReader:
    """Stands in for ``FakeKey.value`` (whole-object bytes) where moto only takes ``len()`` and one slice."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def __getitem__(self, item: slice) -> bytes:
        start, stop, _ = item.indices(len(self))
        with self._key.lock:  # moto's own lock around its buffer's seek + read
            buffer = self._key._value_buffer
            buffer.seek(start)
            return bytes(buffer.read(max(0, stop - start)))

    def __bytes__(self) -> bytes:
        return self[:]


class _RangedKey:
    """A FakeKey whose ``value`` reads only what is sliced; everything else is the key's own."""

    def __init__(self, key: Any) -> None:
        self._key = key

    @property
    def value(self) -> _RangeReader:
        return _RangeReader(self._key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._key, name)


def _one_range(header: str | None) -> bool:
    return bool(header) and header.startswith("bytes=") and "," not in header  # type: ignore[union-attr]


def install_ranged_reads() -> None:
    """Serve GETs with one byte range, and UploadPartCopy, by reading only that range (idempotent).

    Patched at moto's S3 response class: ``get_object`` fetches the key through ``_get_key`` and returns
    ``key.value``, which ``key_response`` then slices (``_handle_range_header``). While a one-range GET is
    served, ``_get_key`` hands out a key whose ``value`` reads lazily; whatever moto does not slice (a
    range it ignores, e.g. a malformed one) is read whole, as before.
    """
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    from lambda_ingest.local.moto_storage import SharedBuffer, install_shared_storage

    install_shared_storage()  # copies and completed uploads share bytes instead of copying them
    with _lock:
        if getattr(S3Response, "_lambda_ingest_ranged_reads", False):
            return
        get_object, get_key, handle_range = S3Response.get_object, S3Response._get_key, S3Response._handle_range_header

        def ranged_get_object(self: Any) -> Any:
            _ranged.active = _one_range(self.headers.get("range")) and not self._get_int_param("partNumber")
            try:
                return get_object(self)
            finally:
                _ranged.active = False

        def lazy_get_key(self: Any, *args: Any, **kwargs: Any) -> Any:
            key, not_modified = get_key(self, *args, **kwargs)
            return (_RangedKey(key) if getattr(_ranged, "active", False) else key), not_modified

        def materialised_range(self: Any, request: Any, headers: dict[str, Any], content: Any) -> Any:
            status, headers, body = handle_range(self, request, headers, content)
            return status, headers, bytes(body) if isinstance(body, _RangeReader) else body

        def ranged_part_copy(
            backend: Any,
            dest_bucket_name: str,
            multipart_id: str,
            part_id: int,
            src_bucket_name: str,
            src_key_name: str,
            src_version_id: str | None,
            start_byte: int | None,
            end_byte: int | None,
        ) -> Any:
            # moto's S3Backend.upload_part_copy, reading only the part's range (moto reads the whole source
            # object for every part: a 1 GB copy in 16 parts read 16 GB).
            multipart = backend.get_bucket(dest_bucket_name).multiparts[multipart_id]
            source = backend.get_object(src_bucket_name, src_key_name, version_id=src_version_id)
            if start_byte is None or end_byte is None:
                return multipart.set_part(part_id, source.value)
            if isinstance(source._value_buffer, SharedBuffer):  # the part shares the source's bytes
                return multipart.set_part(part_id, source._value_buffer.view(start_byte, end_byte + 1))
            return multipart.set_part(part_id, _RangeReader(source)[start_byte : end_byte + 1])

        S3Backend.upload_part_copy = ranged_part_copy  # type: ignore[method-assign]
        S3Response.get_object = ranged_get_object  # type: ignore[method-assign]
        S3Response._get_key = lazy_get_key  # type: ignore[method-assign]
        S3Response._handle_range_header = materialised_range  # type: ignore[method-assign]
        S3Response._lambda_ingest_ranged_reads = True  # type: ignore[attr-defined]


def _install_cached_module_list() -> None:
    """moto's server lists its own package directory (a listdir and ~150 isdir calls) on every request,
    under the dispatcher's lock: ~18% of the local S3's CPU per request. The list never changes."""
    from moto import backends

    with _lock:
        if not hasattr(backends.list_of_moto_modules, "cache_info"):
            modules = tuple(backends.list_of_moto_modules())
            backends.list_of_moto_modules = lru_cache(maxsize=1)(lambda: modules)  # type: ignore[assignment]


@contextmanager
def aws_style_version_ids() -> Iterator[None]:
    """32-character version ids inside the block; restores the previous behaviour on exit."""
    was_installed = aws_style_version_ids_installed()
    install_aws_style_version_ids()
    try:
        yield
    finally:
        if not was_installed:
            uninstall_aws_style_version_ids()


class _MotoGateway:
    """cheroot's WSGI gateway with moto's own environ (S3 metadata names keep their underscores), writing
    views of bytes as they are.

    The same as moto's ``MotoRequestHandler.make_environ`` for werkzeug: every header whose name moto
    preserves is written under its own key, with the original spelling recorded for moto's Request.
    """

    @staticmethod
    def build(base: type) -> type:
        from moto.core.request import (
            PRESERVED_HEADER_NAMES_ENVIRON_KEY,
            environ_key_for_header,
            should_preserve_original_header_name,
        )

        class Gateway(base):  # type: ignore[misc, valid-type]
            def get_environ(self) -> dict[str, Any]:
                environ = super().get_environ()
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.req.inheaders.items()]
                dashed = {environ_key_for_header(name) for name, _ in headers if "_" not in name}
                names: dict[str, str] = {}
                values: dict[str, list[str]] = {}
                for name, value in headers:
                    if not should_preserve_original_header_name(name):
                        continue
                    key = environ_key_for_header(name)
                    if key in dashed:  # never let an underscored header stand in for a dashed one
                        continue
                    names.setdefault(key, name)
                    values.setdefault(key, []).append(value.replace("\r\n", ""))
                for key, key_values in values.items():
                    environ[key] = ",".join(key_values)
                environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names
                return environ

            def respond(self) -> None:
                # cheroot's respond, also taking read-only views of bytes (the stored bytes a ranged GET
                # answers with, unsent copies saved); cheroot refuses anything but bytes.
                response = self.req.server.wsgi_app(self.env, self.start_response)
                try:
                    for chunk in response:
                        if not isinstance(chunk, bytes | memoryview):
                            raise ValueError("WSGI applications must yield bytes")
                        if len(chunk):
                            self.write(chunk)
                finally:
                    self.req.ensure_headers_sent()
                    if hasattr(response, "close"):
                        response.close()

        return Gateway


class LocalS3Server:
    """moto (S3, SQS, DynamoDB... on one port) with AWS-style version ids, served as S3 serves: kept-alive
    connections, a pool of threads, ranged GETs answered straight from the store.

    Use with boto3's ``endpoint_url=server.endpoint_url``, any credentials, region ``us-east-1``.
    ``port=0`` picks a free port. The version-id patch stays installed after :meth:`stop`; it is
    process-wide and harmless, and other servers or mocks in the process may rely on it.

    Served by cheroot rather than moto's own werkzeug server: werkzeug closes the connection after every
    response ("Connection: close") and starts a thread per connection, so every request paid a new
    connection on both sides, which S3 clients (boto3, urllib3) never do against S3. cheroot keeps no
    access log.
    """

    # Requests served at once; more wait for a free thread (cheroot starts these and adds none under load).
    # 16 fits one function's md5 stream (16 ranges) or parallel part copy (16 parts); more threads were not
    # faster in the benchmark's runs here.
    THREADS = 16

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        middleware: Callable[[Any], Any] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._middleware = middleware  # wraps moto's WSGI application (e.g. the benchmark's S3 model)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalS3Server is not started")
        host, port = self._server.bind_addr[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalS3Server:
        from cheroot import wsgi
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from lambda_ingest.local.fast_gets import FastRangedGets

        if self._server is not None:
            return self
        install_aws_style_version_ids()
        _install_cached_module_list()
        app: Any = FastRangedGets(DomainDispatcherApplication(create_backend_app))
        if self._middleware is not None:
            app = self._middleware(app)
        server = wsgi.Server(
            (self._host, self._port), app, numthreads=self.THREADS, max=self.THREADS, server_name="local-s3"
        )
        server.gateway = _MotoGateway.build(server.gateway)
        server.prepare()  # binds the port (0: a free one) before the thread starts
        self._thread = threading.Thread(target=server.serve, name="local-s3", daemon=True)
        self._thread.start()
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def reset(self) -> None:
        """Forget every bucket, queue and table (moto's reset API), so a test starts clean."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
