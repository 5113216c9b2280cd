"""Write the hostile corpus to a folder, run every case and print a table (``python make_corpus.py OUT [--run]``)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0]).resolve()
    base = corpus.build_base(root / "_base")
    failed = 0
    for case in corpus.all_cases():
        case_dir = corpus.prepare(case, root, base)
        if "--run" not in argv:
            print(f"{case.klass:12} {case.name}")
            continue
        outcome = corpus.run(case, case_dir, base)
        found = corpus.problems(case, outcome)
        if not found and case.check is not None:
            try:
                case.check(case_dir, outcome)
            except AssertionError as exc:
                found.append(f"check failed: {exc}")
        failed += bool(found)
        first = (outcome.stderr.strip().splitlines() or [""])[-1][:110]
        print(f"{'FAIL' if found else 'ok  '} {case.klass:12} {case.name:40} exit {outcome.returncode:3} "
              f"{outcome.seconds:5.1f} s {outcome.peak_rss_bytes / 2**20:6.0f} MiB  {'; '.join(found) or first}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
