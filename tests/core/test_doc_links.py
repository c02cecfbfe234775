"""The design the code cites is the repository's own docs/design.md: no file may cite the
upper-case design file that was never in the repository, and every relative link of the top-level docs and
docs/ leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("watcher", "tests", "bench", "examples", "docs", "systemd", "rules", "monitoring")
OLD_NAME = "DESIGN" + ".md"  # spelled apart so that this file does not cite it


def _files():
    yield from ROOT.glob("*.md")
    for top in CHECKED:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".yml", ".rb", ".sh", ".service", ".json"):
                yield path


def test_nothing_cites_a_design_document_outside_the_repository():
    citing = [str(p.relative_to(ROOT)) for p in _files() if OLD_NAME in p.read_text(errors="replace")
              and p.name != "CHANGELOG.md"]
    assert citing == [], f"cite docs/design.md (same section numbers) instead of {OLD_NAME}"


def test_relative_links_in_the_docs_lead_to_files_that_exist():
    broken = []
    for doc in [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []
