"""The package's layers hold and its code is lint-clean: `lint-imports` checks the contracts in pyproject.toml (the
layers from the command line down to data and errors, EgoGCN and the baselines independent); `ruff check` its rules."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_ruff_check_is_clean():
    """`ruff check` with pyproject.toml's rules over the package, the tests, the shim and .ci."""
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "ego_dgl", "tests", "cli.py", ".ci"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_the_equations_cited_by_the_code_live_in_the_repository():
    """The code cites docs/egogcn.md by section name, in quotes; every section it names is a heading there."""
    import re

    headings = {h.split(" (Eq.")[0] for h in re.findall(r"^## (.+)$", (ROOT / "docs" / "egogcn.md").read_text(), flags=re.M)}
    cited = set()
    for path in [*ROOT.glob("ego_dgl/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        text = path.read_text()
        assert "SPEC" + ".md" not in text, f"{path} cites a file the repository does not hold"
        cited |= set(re.findall(r'docs/egogcn\.md, "([^"]+)"', text))
    assert cited and cited <= headings, cited - headings


def test_every_rich_console_leaves_emoji_codes_alone():
    """A user's ':x:' in a path or name is printed as typed: every Console the package
    makes has emoji=False (rich's default turns such codes into emoji)."""
    import re

    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "ego_dgl").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bConsole\(", line) and "emoji=False" not in line
    ]
    assert not offenders, offenders


def test_docs_name_every_registered_model():
    """docs/models.md has a row for every model `--model` takes (the presets aside)."""
    from ego_dgl.model.registry import MODELS

    table = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    missing = [name for name in MODELS if f"| {name} |" not in table]
    assert not missing, missing
