"""The repository is self-contained: every docs/ section the code cites exists, and nothing points outside."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"docs/(formats|protocol|layout|design)\.md\s+(\d+(?:\.\d+)?(?:\s*(?:-|,)\s*\d+(?:\.\d+)?)*)")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.M)


def sources() -> list[Path]:
    found = [p for p in (ROOT / "desync").rglob("*") if p.suffix in (".py", ".c", ".pyi")]
    found += [p for p in (ROOT / "tests").rglob("*") if p.suffix in (".py", ".md") and p.is_file()]
    return sorted(found)


def sections(doc: str) -> set[str]:
    return set(HEADING.findall((ROOT / "docs" / f"{doc}.md").read_text()))


def citations() -> list[tuple[str, str, str]]:
    """(file, document, section number) for every section cited."""
    out = []
    for path in sources():
        for m in CITATION.finditer(path.read_text(errors="replace")):
            for number in re.split(r"\s*[-,]\s*", m.group(2)):
                out.append((str(path.relative_to(ROOT)), m.group(1), number))
    return out


def test_code_cites_docs() -> None:
    cited = citations()
    assert len(cited) > 40
    assert {"formats", "protocol", "layout"} <= {doc for _, doc, _ in cited} <= {"formats", "protocol", "layout",
                                                                                "design"}


@pytest.mark.parametrize("doc", ["formats", "protocol", "layout", "design"])
def test_every_cited_section_exists(doc: str) -> None:
    have = sections(doc)
    missing = [(f, n) for f, d, n in citations() if d == doc and n not in have]
    assert not missing


def test_no_citation_of_documents_outside_docs() -> None:
    bare = re.compile(r"(?<![/\w])(formats|protocol|layout)\.md")
    offenders = [str(p.relative_to(ROOT)) for p in sources() if bare.search(p.read_text(errors="replace"))]
    assert not offenders


def test_nothing_refers_to_the_shared_folder() -> None:
    outside = "shared" + "/"  # spelled apart so this file does not match itself
    offenders = [str(p.relative_to(ROOT)) for p in sources() if outside in p.read_text(errors="replace")]
    assert not offenders


def test_contributing_lists_every_environment_variable_the_program_reads() -> None:
    read = set()
    for path in (ROOT / "desync").rglob("*.py"):
        read |= set(re.findall(r"""(?:environ\.get|env\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""",
                               path.read_text()))
    assert {"CASYNC_SSH_PATH", "DESYNC_NO_ACCEL", "S3_ACCESS_KEY"} <= read
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    assert not [name for name in sorted(read) if f"`{name}`" not in contributing]
