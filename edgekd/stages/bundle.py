"""The bundle stage: the deployable folder + tarball, with manifest and report."""

from __future__ import annotations

from edgekd.results import BundleResult
from edgekd.run_context import Run


def bundle(r: Run) -> BundleResult:
    """The deployable folder + tarball, with manifest and report."""
    from edgekd.bundle import write_bundle

    return BundleResult.from_json(write_bundle(r))
