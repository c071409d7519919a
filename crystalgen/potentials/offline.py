"""Nothing downloads at run time: the errors that say which file or package to provide instead."""

from __future__ import annotations

import importlib.util


class DownloadRequired(ValueError):
    """A potential's weights are not on this machine and would have to be downloaded."""

    def __init__(self, path: str, why: str = ""):
        self.path = path
        super().__init__(
            f"weights file {path} is not on this machine{f' ({why})' if why else ''}; crystalgen never downloads "
            "at run time: fetch the file on a machine with network access and put it there, or name its local "
            "path in the potential spec"
        )


def require_file(path: str, family: str, example: str) -> str:
    """``path`` if it is a file, else :class:`DownloadRequired` (a model *name* here would mean a download)."""
    import os

    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        raise DownloadRequired(expanded, f"{family} needs a local model file, e.g. {example}")
    return expanded


def require_module(module: str, package: str, install: str | None = None) -> None:
    """Raise ``ValueError`` naming the package to install when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"this potential needs the Python package {package!r}, which is not installed here: "
                         f"pip install {install or package}")
