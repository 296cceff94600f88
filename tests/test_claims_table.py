"""Lesson 07's table of the seed text's 14 claims: 14 rows, a verdict in each, and every "where" a real section.

A "where" cell names sections as  02 §3 “Five baselines on the same samples”  (lesson, section number,
heading); each must match a heading `# ## 3. Five baselines on the same samples` of lessons/02_*.py.
"""

import re
from pathlib import Path

import pytest

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
REF = re.compile(r"(\d\d) §(\d+) “([^”]+)”")
VERDICTS = ("supported", "refuted", "partly", "not resolved")


def claims_rows(text: str) -> list[list[str]]:
    """The data rows of the markdown table under the heading '## 11. The seed's 14 claims' (cells stripped)."""
    start = text.index("# ## 11. The seed's 14 claims")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("# ## ") or line.startswith("# %%"):
            if rows:
                break
            continue
        if line.startswith("# |") and not line.startswith("# |---"):
            rows.append([c.strip() for c in line[2:].strip().strip("|").split("|")])
    return rows[1:]  # without the header


def missing_sections(where: str) -> list[str]:
    """The references in `where` that name no existing lesson heading (all of it if it holds none)."""
    refs = REF.findall(where)
    if not refs:
        return [where]
    bad = []
    for lesson, number, title in refs:
        files = list(LESSONS.glob(f"{lesson}_*.py"))
        heading = f"# ## {int(number)}. {title}"
        if len(files) != 1 or heading not in files[0].read_text(encoding="utf-8").splitlines():
            bad.append(f"{lesson} §{number} “{title}”")
    return bad


@pytest.fixture(scope="module")
def rows():
    return claims_rows((LESSONS / "07_comparison.py").read_text(encoding="utf-8"))


def test_fourteen_claims_each_with_a_verdict(rows):
    assert len(rows) == 14
    assert [r[0] for r in rows] == [str(i) for i in range(1, 15)]
    for r in rows:
        assert len(r) == 4, r
        assert r[2].lower().startswith(VERDICTS), f"claim {r[0]}: verdict must start with one of {VERDICTS}"


def test_every_where_names_an_existing_section(rows):
    for r in rows:
        assert missing_sections(r[3]) == [], f"claim {r[0]}"


def test_the_checker_sees_a_missing_section():
    assert missing_sections("02 §3 “Five baselines on the same samples”") == []
    assert missing_sections("02 §3 “Six baselines”") == ["02 §3 “Six baselines”"]
    assert missing_sections("02 §99 “Five baselines on the same samples”") != []
    assert missing_sections("lesson 2") == ["lesson 2"]
