"""Sessions: ``nox -s tests``, ``nox -s docs``, ``nox -s lint`` (the CI set, with ``nox -s package``),
``nox -s bench`` and ``nox -s browser`` (opt-in).

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


@nox.session(default=False)
def package(session: nox.Session) -> None:
    """Build the wheel and sdist into dist/, check them, and run the wheel from a clean virtualenv.

    Checks: ``twine check --strict`` (metadata and README render on an index); the sdist holds what a
    rebuild needs (a wheel built from it has the same files); the wheel holds the package and its data
    files and no tests or docs; installed alone in a new virtualenv, ``flyte-iap --version`` prints the
    version and ``flyte-iap --help`` runs. ``.github/workflows/release.yml`` publishes what this builds.
    """
    import glob
    import shutil
    import tarfile
    import zipfile
    from pathlib import Path

    session.install(*nox.project.dependency_groups(PYPROJECT, "package"))
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build", "--sdist", "--wheel", "--outdir", "dist")
    wheels, sdists = glob.glob("dist/*.whl"), glob.glob("dist/*.tar.gz")
    if len(wheels) != 1 or len(sdists) != 1:
        session.error(f"expected one wheel and one sdist in dist/, found {wheels + sdists}")
    wheel, sdist = wheels[0], sdists[0]
    session.run("twine", "check", "--strict", wheel, sdist)

    names = zipfile.ZipFile(wheel).namelist()
    required = ["flyte_iap/__init__.py", "flyte_iap/py.typed", "flyte_iap/cli/__init__.py"]
    missing = [n for n in required if n not in names]
    tops = {n.split("/")[0] for n in names}
    stray = sorted(t for t in tops if t != "flyte_iap" and not t.endswith(".dist-info"))
    if missing or stray:
        session.error(f"wheel {wheel}: missing {missing}, unexpected top-level entries {stray}")
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    for needed in ("pyproject.toml", "README.md", "CHANGELOG.md", "flyte_iap/__init__.py"):
        if needed not in members:
            session.error(f"sdist {sdist} lacks {needed}")

    tmp = Path(session.create_tmp()).resolve()
    rebuilt = tmp / "from-sdist"
    shutil.rmtree(rebuilt, ignore_errors=True)
    session.run("python", "-m", "build", "--wheel", "--outdir", str(rebuilt), sdist)
    again = zipfile.ZipFile(next(rebuilt.glob("*.whl"))).namelist()
    if sorted(again) != sorted(names):
        session.error(f"a wheel built from the sdist differs: {sorted(set(names) ^ set(again))}")

    venv = tmp / "clean-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("virtualenv", "--quiet", str(venv))
    bindir = venv / "bin"
    session.run(str(bindir / "python"), "-m", "pip", "install", "--quiet", wheel, external=True)
    version = session.run(str(bindir / "flyte-iap"), "--version", external=True, silent=True)
    expected = "flyte-iap, version " + Path(wheel).name.split("-")[1]
    if not version or version.strip() != expected:
        session.error(f"flyte-iap --version printed {version!r}")
    session.run(str(bindir / "flyte-iap"), "--help", external=True, silent=True)
    session.log(f"checked {wheel} and {sdist}; the wheel runs from a clean virtualenv: {version.strip()}")


@nox.session(default=False)
def check_precision(session: nox.Session) -> None:
    """`flyte-iap check` on the layout corpus (tests/check/layouts): exact findings, precision printed."""
    _install(session, "test")
    session.run("pytest", "tests/check/test_check_layouts.py", "-q", "-s", "-p", "no:xdist", *session.posargs)


@nox.session
def flyte2(session: nox.Session) -> None:
    """The Flyte 2 `flyte` SDK (CLI and Python API) through IapProxy to FakeFlyte2 (tests/flyte2)."""
    _install(session, "flyte2")
    session.run(
        "pytest",
        "-c",
        "tests/flyte2/pytest.ini",
        "-n",
        "2",
        "--dist",
        "loadfile",
        "tests/flyte2",
        *session.posargs,
    )
