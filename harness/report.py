"""``python -m harness.report``: the README's sample tables and the documentation's measured figures,
regenerated from the committed ``results/``.

The README's verdict table is copied from ``results/reference/summary.md`` (``tests/test_project.py``
checks it); every folder of ``results/`` becomes a fragment under ``docs/generated/`` that the pages of
the documentation include (``harness.reporting.docs``). Build the site after it: ``mkdocs build --strict``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.cli import Parser, UsageError
from harness.reporting import docs
from harness.reporting.tables import update_readme


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m harness.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    parser.add_argument("--docs", type=Path, default=Path("docs/generated"),
                        help="where the fragments go, replaced whole (default: docs/generated)")
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="README whose reference block is updated (default: README.md)")
    try:
        args = parser.parse_args(argv)
        reference = args.results / "reference" / "summary.md"
        for path in (reference, args.readme):
            if not path.is_file():
                raise UsageError(f"{path} does not exist")
    except UsageError as exc:
        print(f"harness.report: error: {exc}", file=sys.stderr)
        return 2
    args.readme.write_text(update_readme(args.readme.read_text(), reference.read_text()))
    names = docs.write(args.results, args.docs)
    print(f"{args.readme}: reference tables updated; {args.docs}: {len(names)} fragments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
