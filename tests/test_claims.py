"""The claims table is assembled from the chapters' verdicts (book/_ext/claimstable.py)."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import claimstable  # noqa: E402


@pytest.fixture(scope="module")
def verdicts():
    return claimstable.chapter_verdicts(ROOT / "book", claimstable.toc_chapters(ROOT))


def test_every_claim_has_a_verdict_in_some_chapter(verdicts):
    claims = json.loads((ROOT / claimstable.CLAIMS).read_text())["claims"]
    assert [c["id"] for c in claims] == [f"C{i}" for i in range(1, 25)]
    assert set(verdicts) == {c["id"] for c in claims}
    for cid, vs in verdicts.items():
        assert all(v["headline"] and v["reason"] for v in vs), cid


def test_the_notes_known_errors_are_called_wrong(verdicts):
    # the developers' guide: C8, C12 and C15 were wrong from the start
    for cid in ("C8", "C12", "C15"):
        assert claimstable.category(verdicts[cid][-1]["headline"]) == "wrong", cid


@pytest.mark.parametrize(
    "headline, expected",
    [
        ("Correct.", "holds"),
        ("Consistent", "holds"),
        ("Correct, and expected.", "holds"),
        ("Correct, read in GiB", "holds with a caveat"),
        ("Holds with bitsandbytes at small batch", "holds with a caveat"),
        ("Outdated", "outdated"),
        ("Outdated error, lasting advice.", "outdated"),
        ("Wrong.", "wrong"),
    ],
)
def test_category_from_headline(headline, expected):
    assert claimstable.category(headline) == expected


@pytest.mark.parametrize(
    "headline", ["Mostly right", "Partly.", "Correctly measured", "Unclear"]
)
def test_an_unknown_headline_is_an_error_not_a_caveat(headline):
    with pytest.raises(ValueError, match="unknown verdict headline"):
        claimstable.category(headline)


def test_every_shown_verdict_has_a_known_headline(verdicts):
    """The table shows each claim's last verdict; its headline must have a category."""
    for cid, vs in verdicts.items():
        assert claimstable.category(vs[-1]["headline"]) in claimstable.CATEGORIES, cid


def test_first_sentence_stops_at_the_first_full_stop():
    assert (
        claimstable.first_sentence(" The outliers are columns.  The rest is int8.")
        == "The outliers are columns."
    )
    assert (
        claimstable.first_sentence("Weights shrink to 0.5 of fp16; fine")
        == "Weights shrink to 0.5 of fp16; fine"
    )
