"""docs/errors.md lists every bad input the error tests try, with the error it gets.

The cases live in one place, the test modules; the page is generated from them. Regenerate
it after changing a case with `RNNFLOW_WRITE_DOCS=1 python -m pytest tests/test_error_table.py`.
"""

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "errors.md"
SOURCES = {
    "test_errors.py": ("CASES",),
    "test_dynamics_errors.py": ("CONSTRUCTORS", "TRAIN_CALLS"),
    "test_rule_errors.py": ("RULE_CALLS",),
}

HEADER = """# Bad input and the errors it gets

Every row is a case the tests run: the call, the exception, and a part of its message
(each message names the argument). All of them are raised in Python before anything is
compiled. The page is generated from the tests (`tests/test_error_table.py`), so it lists
exactly what is checked. Where a call takes arguments (`k`, `p`, `xs`), the case passes
them as arrays: a key, parameters, inputs of the right shapes.
"""


FILES = """
## Damaged files, folders of other runs, two writers

What is on disk is checked too, by the tests in `tests/test_store_damage.py`,
`tests/test_cli_damage.py` and `tests/test_resume.py`. Every chunk of a sweep's store
carries a CRC-32C checksum (zarr's `crc32c` codec) and is verified when the store is
resumed, found finished, or opened; `train_seeds` checkpoints carry a SHA-256 of their
arrays (see [Verified stores](sweeps.md#verified-stores) for how to check a store by hand).
"""

# (what is found, what happens): each row is a case of the tests named above.
FILE_CASES = [
    (
        "a chunk of a finished unit missing, truncated, overwritten or with a flipped bit, "
        "on `rf.open_results`",
        "`DamagedStoreError` (a `ValueError`): `unit 1 (init_scale=0.2, seeds 0-4): its "
        "chunk loss/c/1/0/0 fails its checksum`",
    ),
    (
        "the same, on `rf.run_sweep` or `rnnflow sweep`/`run`/`reproduce`",
        "one-line `DamageWarning` naming the unit; that unit alone is computed again, to "
        "the same store",
    ),
    (
        "a damaged coordinate",
        "one-line `DamageWarning`; it is written again, nothing is computed",
    ),
    (
        "a damaged `train_seeds` checkpoint file (or one swapped in)",
        "one-line `DamageWarning` naming it; its chunk alone is computed again",
    ),
    (
        "a store, results folder or checkpoint folder of another run, or of other files",
        "`FileExistsError` naming the folder (`holds the results of another sweep`, `holds "
        "the chunks of another run`, `not empty`); nothing in it changes, byte for byte",
    ),
    (
        "a folder another live run is writing (its lock names a running pid)",
        "`FileExistsError`: `is being written by another run (pid N on HOST)`",
    ),
    (
        "the lock of a killed run (its pid no longer runs on this host)",
        "taken over, without a word",
    ),
    (
        "a full disk or a file-size limit while writing (the command)",
        "`rnnflow: error: writing the results in OUT failed: File too large ...`, exit 1; "
        "every finished unit is kept",
    ),
    (
        "a resume with other `lanes`",
        "one-line warning: the units computed now agree with the rest to rounding",
    ),
]


def _cell(text: str) -> str:
    text = " ".join(text.split())
    return text.replace("|", "\\\\|")


def _rows(module: str, names: tuple[str, ...]):
    source = (ROOT / "tests" / module).read_text()
    tree = ast.parse(source)
    setup, rows = [], []
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        if target.id in names:
            for item in node.value.elts:
                parts = item.elts
                lam = next(p for p in parts if isinstance(p, ast.Lambda))
                error, text = parts[-2], parts[-1]
                call = ast.get_source_segment(source, lam.body)
                rows.append((call, error.id, ast.literal_eval(text)))
        elif target.id.isupper() and not target.id.startswith("_"):
            setup.append(ast.get_source_segment(source, node))
    return setup, rows


def render() -> str:
    out = [HEADER]
    total = 0
    for module, names in SOURCES.items():
        setup, rows = _rows(module, names)
        total += len(rows)
        out.append(f"\n## From `tests/{module}`\n")
        out.append("With these names defined:\n\n```python\n" + "\n".join(setup) + "\n```\n")
        out.append("| input | error | message contains |\n| --- | --- | --- |")
        for call, error, text in rows:
            out.append(f"| `{_cell(call)}` | `{error}` | {_cell(text)} |")
    out.append(f"\n{total} cases in all.\n")
    out.append(FILES)
    out.append("| what is found | what happens |\n| --- | --- |")
    out += [f"| {found} | {happens} |" for found, happens in FILE_CASES]
    return "\n".join(out) + "\n"


def test_the_error_page_lists_every_case():
    text = render()
    if os.environ.get("RNNFLOW_WRITE_DOCS"):
        PAGE.write_text(text)
    assert PAGE.exists(), "generate it: RNNFLOW_WRITE_DOCS=1 python -m pytest " + __file__
    assert PAGE.read_text() == text, "docs/errors.md is out of date: regenerate it (see above)"
    assert text.count("\n| `") >= 25
