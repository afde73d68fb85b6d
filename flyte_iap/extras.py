"""How to install an optional part of flyte-iap (an extra), worded for wherever flyte-iap came from.

Example::

    from flyte_iap.extras import install_hint

    install_hint("keyring")  # "pip install 'keyring>=24' (flyte-iap's [keyring] extra) in ..."

flyte-iap may have been installed from a clone, a built wheel or with pipx, and is on no package
index, so asking pip for ``flyte-iap[keyring]`` fails: the hint names the extra's own requirements
instead, read from the installed package's metadata, which pip finds on any index.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

#: The extras' requirements as pyproject.toml declares them, for a source tree without metadata.
_FALLBACK = {
    "keyring": ["keyring>=24"],
    "doctor": ["grpcio>=1.62"],
    "testing": ["pyjwt[crypto]>=2.8", "cryptography>=42", "h2>=4.1", "grpcio>=1.62", "flyteidl>=1.10"],
    "proxy": ["h11>=0.14", "h2>=4.1"],
}


def extra_requirements(extra: str) -> list[str]:
    """The requirements of flyte-iap's ``extra``, without their ``extra == ...`` markers.

    Args:
        extra: the extra's name (``keyring``, ``doctor``, ``testing``).

    Returns:
        Requirement strings such as ``keyring>=24``, in the order the metadata lists them.
    """
    from importlib import metadata

    try:
        declared = metadata.requires("flyte-iap") or []
    except metadata.PackageNotFoundError:
        return list(_FALLBACK.get(extra, []))
    marker = re.compile(r"""\s*;\s*extra\s*==\s*["']""" + re.escape(extra) + r"""["']\s*$""")
    found = [marker.sub("", r) for r in declared if marker.search(r)]
    return found or list(_FALLBACK.get(extra, []))


def install_hint(extra: str) -> str:
    """A pip command line that installs ``extra``'s requirements into the running interpreter.

    Args:
        extra: the extra's name.

    Returns:
        ``pip install 'a>=1' 'b>=2' (flyte-iap's [extra] extra; with pipx: pipx inject flyte-iap ...)``.
    """
    requirements = " ".join(f"'{r}'" for r in extra_requirements(extra))
    parts = Path(sys.prefix).parts
    # pipx keeps one virtualenv per app under .../pipx/venvs/NAME
    in_pipx = len(parts) >= 3 and parts[-2] == "venvs" and "pipx" in parts[-3]
    where = f"pipx inject flyte-iap {requirements}" if in_pipx else f"pip install {requirements}"
    return f"{where} (flyte-iap's [{extra}] extra)"
