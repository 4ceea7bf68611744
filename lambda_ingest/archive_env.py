"""ocs_archive's own environment variables (header mapping, publication rules): which exist and what is valid.

ocs_archive reads these itself, at import, with bare `int()` / `ast.literal_eval()`: a bad value surfaces as
an unnamed ValueError on every file. `validate_archive_env()` checks them once, naming the variable, and
is shared by the function's start (settings) and the CDK synth (`archive_env` context).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

from lambda_ingest.errors import ConfigurationError

# Comma-separated lists (ocs_archive's get_tuple_from_environment).
LIST_NAMES = frozenset(
    {
        "REQUIRED_HEADERS",
        "HEADER_BLACKLIST",
        "NULL_HEADER_VALUES",
        "CALIBRATION_TYPES",
        "PUBLIC_PROPOSALS",
        "PRIVATE_PROPOSALS",
        "PRIVATE_FILE_TYPES",
        "REQUIRED_THUMBNAIL_METADATA",
        "RELATED_FRAME_KEYS",
        "IGNORED_CHARS",
        "PRIVATE_PROPOSAL_TAGS",
        "PUBLIC_PROPOSAL_TAGS",
    }
)
INT_NAMES = frozenset({"DAYS_UNTIL_PUBLIC"})
LITERAL_DICT_NAMES = frozenset({"FILETYPE_MAPPING_OVERRIDES"})
TEXT_NAMES = frozenset({"OBSERVATION_PORTAL_BASE_URL"})
ARCHIVE_ENV_NAMES = LIST_NAMES | INT_NAMES | LITERAL_DICT_NAMES | TEXT_NAMES
KEY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_KEY$")  # OBSERVATION_DATE_KEY, RA_KEY, ... (header keywords)
# A FITS keyword (8 chars, but HIERARCH and ocs_archive's lower-case metadata names are longer).
_HEADER_KEYWORD = re.compile(r"^[A-Za-z0-9_\-]{1,68}$")


def is_archive_env_name(name: str) -> bool:
    return name in ARCHIVE_ENV_NAMES or bool(KEY_NAME.match(name))


def validate_archive_env(env: Mapping[str, str]) -> None:
    """Raise ConfigurationError naming the first ocs_archive variable in `env` whose value is invalid."""
    for name in sorted(n for n in env if is_archive_env_name(n)):
        _check(name, str(env[name]))


def _check(name: str, raw: str) -> None:
    value = raw.strip()
    if name in INT_NAMES:
        try:
            if int(value) < 0:
                raise ValueError
        except ValueError:
            raise ConfigurationError(f"{name} must be a whole number of days (>= 0), got {raw!r}") from None
    elif name in LITERAL_DICT_NAMES:
        try:
            mapping = ast.literal_eval(value or "{}")
        except (ValueError, SyntaxError):
            mapping = None
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and "." in v for k, v in mapping.items()
        ):
            raise ConfigurationError(
                f"{name} must be a Python dict literal of extension -> DataFile class path, "
                f"e.g. {{'.fits.fz': 'ocs_archive.input.lcofitsfile.LcoFitsFile'}}, got {raw!r}"
            )
    elif KEY_NAME.match(name):
        if not _HEADER_KEYWORD.match(value):
            raise ConfigurationError(f"{name} must name one header keyword (letters, digits, - or _), got {raw!r}")
    elif name in LIST_NAMES and name in {"REQUIRED_HEADERS", "REQUIRED_THUMBNAIL_METADATA"} and not value.strip(","):
        raise ConfigurationError(f"{name} must list at least one header keyword, got {raw!r}")
