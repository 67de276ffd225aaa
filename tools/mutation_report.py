"""Per-module mutation scores from mutmut's results (run by ``./dev mutate`` after ``mutmut run``).

    .venv/bin/python tools/mutation_report.py

Prints, for each mutated module: mutants, killed (a test failed, or the mutant timed out), survived,
not covered by the selected tests, pending (not checked yet, e.g. a run
stopped part-way), and the score killed / mutants. The numbers go into docs/testing.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

#: mutmut names a mutant module.x_function__mutmut_N or module.xǁClassǁmethod__mutmut_N.
_NAME = re.compile(r"^(?P<module>[\w.]+?)\.(?:x_|xǁ)")


HEADER = f"{'module':34} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'pending':>7} {'score':>6}"


def scores(lines: list[str]) -> dict[str, Counter[str]]:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        name, _, status = line.strip().rpartition(": ")
        match = _NAME.match(name)
        if match is None or not status:
            continue
        by_module[match["module"]][status] += 1
    return dict(sorted(by_module.items()))


def main() -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True)
    table = scores(out.stdout.splitlines())
    if not table:
        print("no mutmut results: run `./dev mutate` (or `mutmut run`) first", file=sys.stderr)
        return 1
    print(HEADER)
    total: Counter[str] = Counter()
    for module, counts in table.items():
        total.update(counts)
        print(_row(module, counts))
    print(_row("all", total))
    return 0


def _row(name: str, counts: Counter[str]) -> str:
    n = sum(counts.values())
    killed = counts["killed"] + counts["timeout"]
    pending = n - killed - counts["survived"] - counts["no tests"]  # not checked yet (a run stopped part-way), …
    return (
        f"{name:34} {n:7} {killed:7} {counts['survived']:8} {counts['no tests']:8} {pending:7} "
        f"{100 * killed / n if n else 0:5.1f}%"
    )


if __name__ == "__main__":
    sys.exit(main())
