"""The documentation: its generated reference pages match the code, the site builds with warnings as errors, and the
README stays a product page whose two fresh-machine commands are the ones CI and the docs use."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_pages_match_the_code():
    stale = [str(p.relative_to(ROOT)) for p, text in generator().pages().items() if p.read_text() != text]
    assert not stale, f"stale generated pages {stale}: run `python docs/generate.py`"


def test_reference_pages_name_every_key_command_file_and_exit_code():
    from hf_condense.cli import COMMANDS
    from hf_condense.cli.errors import EXIT_CODES
    from hf_condense.stages.run_folder import LAYOUT

    pages = {p.name: text for p, text in generator().pages().items()}
    assert "| `method.syn_steps` | int | `20` |" in pages["recipe.md"]
    assert all(f"## hf-condense {name}" in pages["cli.md"] for name in COMMANDS)
    assert "--random-real" in pages["cli.md"]  # an option of a command, from its parser
    assert all(f"| `{name}` |" in pages["output.md"] for name, _ in LAYOUT)
    assert all(f"| {code} |" in pages["exit-codes.md"] for code in EXIT_CODES)
    assert "| `cifar10_pdd_mtt_ipc10` | pdd + mtt | 10 |" in pages["recipes.md"]


def test_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "load_progressive" in (tmp_path / "site" / "reference" / "api" / "index.html").read_text()


def test_every_docs_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages and all(f": {page}" in nav for page in pages), sorted(p for p in pages if f": {p}" not in nav)


def test_readme_is_a_product_page_with_the_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert 'pip install -e ".[test]" && accelerate launch -m hf_condense.distill recipes/quickstart.yaml\n' in blocks
    assert "pytest\n" in blocks  # the test command, which .ci/run runs
    assert "python -m pytest -p no:cacheprovider" in (ROOT / ".ci" / "run").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", readme):  # every relative link points at a file of the repository
        assert link.startswith("http") or (ROOT / link).exists(), link
