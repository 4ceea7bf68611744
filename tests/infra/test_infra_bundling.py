"""The Docker-free bundler: what goes in, what is stripped, the cache, and the limits.

Everything here runs offline (pip is faked) except `test_real_lambda_bundle`, which builds the deployable
bundle from PyPI and is opt-in: set LAMBDA_INGEST_REAL_BUNDLE=1 (it reuses `.bundle/` when warm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aws_cdk", reason="the bundler uses aws-cdk-lib (the project's `infra` extra)")

from infra import bundling
from infra import constants as c

pytestmark = pytest.mark.infra


def make_package(root: Path) -> Path:
    pkg = root / "lambda_ingest"
    (pkg / "local").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (pkg / "local" / "stack.py").write_text("# dev only\n")
    (pkg / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    return pkg


def fake_spec(**changes: Any) -> bundling.DependencySpec:
    fields: dict[str, Any] = {"requirements": ("boto3>=1.34",), "pins": (("boto3", "1.40.0"),)}
    return bundling.DependencySpec(**{**fields, **changes})


def test_runtime_dependencies_come_from_pyproject() -> None:
    requirements = bundling.runtime_requirements()

    names = {r.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for r in requirements}
    assert names == {"boto3", "requests", "astropy", "ocs-archive", "aws-lambda-powertools"}
    assert not any(n in " ".join(requirements) for n in ("aws-cdk-lib", "cdk-nag", "pytest", "moto"))


def test_platforms_cover_every_manylinux_up_to_lambdas_glibc() -> None:
    platforms = bundling.lambda_platforms()

    assert platforms[0] == "manylinux2014_aarch64"
    assert "manylinux_2_17_aarch64" in platforms and platforms[-1] == "manylinux_2_34_aarch64"
    assert all(p.endswith("_aarch64") for p in platforms)


def test_pins_are_the_installed_closure_of_the_runtime_dependencies() -> None:
    pins = bundling.venv_pins(["boto3>=1.34"])

    assert {"boto3", "botocore", "s3transfer", "jmespath"} <= set(pins)
    assert "aws-cdk-lib" not in pins and "pytest" not in pins


def test_dependency_key_changes_with_what_decides_the_tree() -> None:
    base = fake_spec()

    assert base.key == fake_spec().key
    assert base.key != fake_spec(pins=(("boto3", "1.40.1"),)).key
    assert base.key != fake_spec(python_version="3.12").key
    assert base.key != fake_spec(platforms=bundling.lambda_platforms(machine="x86_64")).key


def test_package_files_leave_out_dev_only_code_and_byte_code(tmp_path: Path) -> None:
    pkg = make_package(tmp_path)

    assert [p.as_posix() for p in bundling.package_files(pkg)] == ["__init__.py", "handler.py"]


def test_asset_hash_follows_the_package_source(tmp_path: Path) -> None:
    pkg = make_package(tmp_path)
    before = bundling.asset_hash(pkg, None)
    (pkg / "local" / "stack.py").write_text("# dev only, changed\n")  # not shipped: same hash

    assert bundling.asset_hash(pkg, None) == before
    (pkg / "handler.py").write_text("def handler(event, context):\n    return None\n")
    assert bundling.asset_hash(pkg, None) != before
    assert bundling.asset_hash(pkg, fake_spec()) != bundling.asset_hash(pkg, None)


def test_strip_removes_what_lambda_never_runs_but_keeps_imported_test_packages(tmp_path: Path) -> None:
    files = [
        "numpy/__init__.py",
        "numpy/core/tests/test_x.py",
        "numpy/_core/include/numpy/ndarrayobject.h",
        "astropy/tests/runner.py",  # imported by astropy/__init__.py
        "astropy/io/fits/tests/test_header.py",
        "pkg/__pycache__/m.cpython-313.pyc",
        "pkg/m.pyi",
        "bin/fitsheader",
        "wrapt-2.5.2.dist-info/METADATA",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")

    bundling.strip_tree(tmp_path)

    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["astropy/tests/runner.py", "numpy/__init__.py", "wrapt-2.5.2.dist-info/METADATA"]


def test_source_mode_bundles_only_the_package(tmp_path: Path) -> None:
    pkg, out = make_package(tmp_path / "src"), tmp_path / "out"
    out.mkdir()

    assert bundling.LocalBundler(pkg, None, tmp_path / "cache").try_bundle(str(out)) is True
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "lambda_ingest/__init__.py",
        "lambda_ingest/handler.py",
    ]


def test_pip_mode_installs_once_then_reuses_the_cached_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def fake_pip(target: Path, spec: bundling.DependencySpec) -> None:
        calls.append(target)
        (target / "boto3").mkdir(parents=True)
        (target / "boto3" / "__init__.py").write_text("")
        (target / "boto3" / "tests").mkdir()
        (target / "boto3" / "tests" / "test_x.py").write_text("")

    monkeypatch.setattr(bundling, "pip_install", fake_pip)
    pkg, cache = make_package(tmp_path / "src"), tmp_path / "cache"
    bundler = bundling.LocalBundler(pkg, fake_spec(), cache)

    for run in ("first", "second"):
        out = tmp_path / run
        out.mkdir()
        assert bundler.try_bundle(str(out))
        assert (out / "boto3" / "__init__.py").is_file() and (out / "lambda_ingest" / "handler.py").is_file()
        assert not (out / "boto3" / "tests").exists()
    assert len(calls) == 1
    assert [p.name for p in cache.iterdir()] == [f"deps-{fake_spec().key}"]


def test_pip_failure_is_reported_with_pips_own_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert "--only-binary=:all:" in cmd and "--platform" in cmd and "--target" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for astropy")

    monkeypatch.setattr(bundling.subprocess, "run", failing_run)

    with pytest.raises(bundling.BundlingError, match="No matching distribution found for astropy"):
        bundling.dependency_tree(fake_spec(), tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # no half-built tree left behind


def test_a_bundle_over_lambdas_limit_fails_the_synth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c, "LAMBDA_UNZIPPED_LIMIT_BYTES", 10)
    pkg, out = make_package(tmp_path / "src"), tmp_path / "out"
    out.mkdir()

    with pytest.raises(bundling.BundlingError, match="over Lambda's 250 MB"):
        bundling.LocalBundler(pkg, None, tmp_path / "cache").try_bundle(str(out))


ELF_MACHINE_AARCH64 = 183


def elf_machine(path: Path) -> int | None:
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little")


def find_python(version: str) -> str | None:
    """A working `pythonX.Y` (a pyenv shim answers only when that version is selected, so check)."""
    candidates = [
        shutil.which(f"python{version}"),
        *map(str, Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}")),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
        if probe.returncode == 0:
            return probe.stdout.strip()
    return None


@pytest.mark.skipif(os.environ.get("LAMBDA_INGEST_REAL_BUNDLE") != "1", reason="set LAMBDA_INGEST_REAL_BUNDLE=1")
def test_real_lambda_bundle(tmp_path: Path) -> None:
    """The deployable tree: aarch64 binaries only, no dev packages, under the limit; and the same tree built
    for this machine's CPython of the Lambda's minor version imports the handler and its dependencies."""
    out = tmp_path / "bundle"
    out.mkdir()
    bundling.LocalBundler(
        bundling.REPO_ROOT / c.PACKAGE_NAME, bundling.default_spec(), bundling.REPO_ROOT / ".bundle"
    ).try_bundle(str(out))

    size, _ = bundling.tree_size(out)
    assert size < c.LAMBDA_UNZIPPED_LIMIT_BYTES
    machines = {elf_machine(p) for p in out.rglob("*.so*") if p.is_file()}
    assert machines == {ELF_MACHINE_AARCH64}
    top = {p.name.split("-")[0] for p in out.iterdir()}
    assert not top & {"aws_cdk", "cdk_nag", "jsii", "constructs", "pytest", "moto", "ruff", "_pytest"}
    assert not (out / c.PACKAGE_NAME / "local").exists()

    python = find_python(c.LAMBDA_PYTHON_VERSION)
    if python is None:
        pytest.skip(f"no python{c.LAMBDA_PYTHON_VERSION} here to import-test the host-platform twin")
    machine = os.uname().machine
    twin_spec = bundling.DependencySpec(
        requirements=bundling.runtime_requirements(),
        pins=tuple(bundling.venv_pins(bundling.runtime_requirements()).items()),
        platforms=bundling.lambda_platforms(machine=machine),
    )
    twin = tmp_path / "twin"
    twin.mkdir()
    bundling.LocalBundler(bundling.REPO_ROOT / c.PACKAGE_NAME, twin_spec, bundling.REPO_ROOT / ".bundle").try_bundle(
        str(twin)
    )
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import astropy.io.fits, astropy.wcs, numpy, ocs_archive, boto3, requests; "
        "from aws_lambda_powertools.utilities.batch import BatchProcessor; "
        "from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer; "
        "import importlib; importlib.import_module(sys.argv[2].rsplit('.', 1)[0])"
    )
    result = subprocess.run(
        [python, "-I", "-c", probe, str(twin), c.HANDLER],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
