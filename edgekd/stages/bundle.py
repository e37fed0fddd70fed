"""The bundle stage: the deployable folder + tarball, with manifest and report."""

from __future__ import annotations

from edgekd.run_context import Run


def bundle(r: Run) -> dict:
    """The deployable folder + tarball, with manifest and report."""
    from edgekd.bundle import write_bundle

    return write_bundle(r)
