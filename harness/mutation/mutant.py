"""A mutant's identity: the diff of a mutated module against its pristine source, and a stable key."""
from __future__ import annotations

import difflib
import hashlib

KEY_CHARS = 12  # hex digits of sha1: collisions among a few thousand mutants are out of the question


def changed_lines(original: str, mutated: str) -> tuple[int, list[str], list[str]]:
    """(first changed line, 1-based; the removed lines; the added lines), whitespace-stripped."""
    first, old, new = 0, [], []
    matcher = difflib.SequenceMatcher(a=original.splitlines(), b=mutated.splitlines(), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        first = first or i1 + 1
        old += [line.strip() for line in matcher.a[i1:i2]]
        new += [line.strip() for line in matcher.b[j1:j2]]
    return first, old, new


def unified_diff(original: str, mutated: str, path: str) -> str:
    """The unified diff (3 lines of context) the report shows."""
    return "".join(difflib.unified_diff(original.splitlines(True), mutated.splitlines(True),
                                        f"a/{path}", f"b/{path}"))


def summary(original: str, mutated: str) -> str:
    """One line: ``L12: old -> new`` (several changed lines joined with `` / ``)."""
    line, old, new = changed_lines(original, mutated)
    return f"L{line}: {' / '.join(old) or '(nothing)'} -> {' / '.join(new) or '(removed)'}"


def key(module: str, original: str, mutated: str) -> str:
    """A key that survives edits elsewhere in the file: the module and the changed lines, not line numbers."""
    _, old, new = changed_lines(original, mutated)
    text = "\n".join([module, *old, "->", *new])
    return hashlib.sha1(text.encode()).hexdigest()[:KEY_CHARS]


def source_key(mutated: str) -> str:
    """The key of a whole mutated source (what run-one names its record by)."""
    return hashlib.sha1(mutated.encode()).hexdigest()[:KEY_CHARS]
