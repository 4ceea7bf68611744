"""cdk-nag helpers: one call per suppression, so each reason sits next to the resource it excuses."""

from __future__ import annotations

from collections.abc import Sequence

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct


def suppress(
    construct: IConstruct,
    rule: str,
    reason: str,
    *,
    applies_to: Sequence[str] | None = None,
    children: bool = False,
) -> None:
    """Suppress AwsSolutions-`rule` on `construct` (and its children when `children`) for `reason`."""
    NagSuppressions.add_resource_suppressions(
        construct,
        [
            NagPackSuppression(
                id=f"AwsSolutions-{rule}", reason=reason, applies_to=list(applies_to) if applies_to else None
            )
        ],
        apply_to_children=children,
    )
