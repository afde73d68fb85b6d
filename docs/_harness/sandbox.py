"""One sandbox per page: a working directory, a private HOME and token cache, and the fakes on demand.

Pages see it as ``doc`` (a sybil fixture). Invisible setup blocks use it::

    % invisible-code-block: python
    %
    % google = doc.google                      # starts FakeGoogle for this page
    % proxy = doc.start("IapProxy", upstream=..., audience=...)   # any fake in flyte_iap.testing

Console blocks run ``flyte-iap`` with :meth:`DocSandbox.env` (the fakes' ``env``, the private HOME and
cache, and any ``export`` lines of the page) in :attr:`DocSandbox.cwd`, where ``examples/`` is the
repository's examples directory. Everything started here is stopped when the page's tests end.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from . import EXAMPLES

#: variables of the developer's shell that must not leak into what a page runs
SCRUB_PREFIXES = (
    "FLYTE_IAP_",
    "GOOGLE_",
    "CLOUDSDK_",
    "GCE_METADATA",
    "FLYTE_CREDENTIALS",
    "FLYTECTL_",
    "KUBECONFIG",
)


def scrubbed_environ() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SCRUB_PREFIXES) and k not in {"BROWSER", "NO_GCE_CHECK"}
    }


class DocSandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "work"
        self.cwd.mkdir(parents=True)
        (self.cwd / "examples").symlink_to(EXAMPLES, target_is_directory=True)
        self.home = root / "home"
        self.home.mkdir()
        #: ``export NAME=value`` lines of the page, applied to later commands
        self.exports: dict[str, str] = {}
        self._fakes: list[tuple[str, Any]] = []
        self._saved_environ: dict[str, str] | None = None

    # -- fakes --------------------------------------------------------------------------------------

    def start(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Start ``flyte_iap.testing.<name>(*args, **kwargs)`` for this page and return it."""
        import flyte_iap.testing

        fake = getattr(flyte_iap.testing, name)(*args, **kwargs)
        started = fake.__enter__()
        self._fakes.append((name, fake))
        return started if started is not None else fake

    def get(self, name: str) -> Any | None:
        return next((f for n, f in self._fakes if n == name), None)

    @property
    def google(self) -> Any:
        """The page's FakeGoogle, started on first use."""
        return self.get("FakeGoogle") or self.start("FakeGoogle")

    # -- environment --------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment a command of this page runs with."""
        env = scrubbed_environ()
        env.update(
            HOME=str(self.home),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            CLOUDSDK_CONFIG=str(self.home / ".config" / "gcloud"),
            FLYTE_IAP_CACHE_DIR=str(self.root / "token-cache"),
            # No metadata server unless a fake provides one.
            GCE_METADATA_HOST="127.0.0.1:9",
            GCE_METADATA_IP="127.0.0.1:9",
            NO_COLOR="1",
            COLUMNS="100",
            PYTHONUNBUFFERED="1",
            # flytekit runs admin.proxyCommand (`flyte-iap ...`) from PATH: make it this interpreter's.
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        )
        for name, fake in self._fakes:
            env.update(getattr(fake, "env", None) or {})
            if name == "FakeGoogle":
                # The scripted user: follows the consent redirect back to the loopback listener.
                env["BROWSER"] = f"{sys.executable} -m flyte_iap.testing browse %s"
        env.update(self.exports)
        return env

    def apply_env(self) -> None:
        """Make :meth:`env` this process's environment too, for python blocks (restored afterwards)."""
        if self._saved_environ is None:
            self._saved_environ = dict(os.environ)
        env = self.env()  # before clearing: env() starts from the current PATH and environment
        os.environ.clear()
        os.environ.update(env)
        # google-auth reads the metadata host when first imported; follow the page's choice.
        with contextlib.suppress(ImportError):
            from google.auth.compute_engine import _metadata

            _metadata._GCE_METADATA_HOST = os.environ["GCE_METADATA_HOST"]

    def close(self) -> None:
        while self._fakes:
            _, fake = self._fakes.pop()
            with contextlib.suppress(Exception):
                fake.__exit__(None, None, None)
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
