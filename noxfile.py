"""Sessions: ``nox -s tests``, ``nox -s docs``, ``nox -s lint`` (the CI set), ``nox -s bench`` and
``nox -s browser`` (opt-in).

Works with plain pip/virtualenv; uses uv when it is installed (``python -m pip install 'nox[uv]'``).
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "docs", "lint"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, group: str) -> None:
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests (real flytekit through the local fakes)."""
    _install(session, "test")
    session.run("pytest", "-n", "auto", "--dist", "loadfile", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Run every snippet in docs/, then build the site with warnings as errors."""
    _install(session, "docs")
    session.run("pytest", "-c", "docs/pytest.ini", "-n", "2", "--dist", "loadfile", "docs", *session.posargs)
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "-j",
        "1",
        "docs",
        "docs/_build/html",
    )
    session.log("site built in docs/_build/html/index.html")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(default=False)
def browser(session: nox.Session) -> None:
    """Open the built site in headless Chromium: console errors, broken local links, screenshots (opt-in).

    Builds the site first unless it exists (``nox -s browser -- --rebuild`` forces it); installs Debian's
    ``chromium`` with apt-get when it is missing and this runs as root. Screenshots go to
    docs/_build/screenshots/.
    """
    import os
    import shutil
    from pathlib import Path

    _install(session, "docs")
    session.install(*nox.project.dependency_groups(PYPROJECT, "browser"))
    args = list(session.posargs)
    if "--rebuild" in args or not Path("docs/_build/html/index.html").exists():
        args = [a for a in args if a != "--rebuild"]
        session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "-j", "1", "docs", "docs/_build/html")
    if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        if os.geteuid() != 0:
            session.error("Chromium is missing: install Debian's chromium (sudo apt-get install chromium)")
        session.run("apt-get", "update", "-q", external=True)
        session.run("apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", external=True)
    session.run(
        "python",
        "docs/_tools/site_check.py",
        "--html",
        "docs/_build/html",
        "--screenshots",
        "docs/_build/screenshots",
        *args,
    )


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against the bare interpreter and the old plugin (opt-in)."""
    _install(session, "bench")
    session.run("python", "benchmarks/run.py", *session.posargs)
