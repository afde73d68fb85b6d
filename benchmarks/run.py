"""Run the side-by-side benchmarks: every ``benchmarks/bench_*.py`` module's ``run(ctx)``.

Example::

    nox -s bench                                  # all of them, in a fresh virtualenv
    python benchmarks/run.py -k user --runs 30    # only bench_user_token.py, 30 measured runs per command

Each module gets the same :class:`common.Context` (the fakes, the old plugin's virtualenv, ``measure`` and
the table printer) and records its goals with ``ctx.goal(...)``. The exit code is 1 when a goal was missed
or a module failed, 0 otherwise (a goal that could not be measured, say the plugin did not install, is
reported as N/A and does not fail the run).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Context  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="pattern", default="", help="only modules whose name contains this")
    parser.add_argument("--runs", type=int, default=20, help="measured runs per command (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs first (default 2)")
    args = parser.parse_args(argv)

    modules = sorted(p.stem for p in HERE.glob("bench_*.py") if args.pattern in p.stem)
    if not modules:
        print(f"no benchmarks/bench_*.py module matches {args.pattern!r}", file=sys.stderr)
        return 1
    failed: list[str] = []
    with Context.open(runs=args.runs, warmup=args.warmup) as ctx:
        for name in modules:
            print(f"\n=== {name}")
            try:
                importlib.import_module(name).run(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(name)
        missed = [g for g in ctx.goals if g.met is False]
        print("\n=== summary")
        for goal in ctx.goals:
            status = {True: "MET ", False: "MISS", None: "N/A "}[goal.met]
            print(f"  [{status}] {goal.description}: {goal.detail}")
        for name in failed:
            print(f"  [FAIL] {name} raised (see above)")
    return 1 if missed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
