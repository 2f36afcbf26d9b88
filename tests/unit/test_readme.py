"""The README stays true: its configuration table lists every setting as it is."""

from __future__ import annotations

import re
from pathlib import Path

from cpms.config import OPTIONS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_readme_documents_every_setting_with_its_flag() -> None:
    rows = dict(re.findall(r"^\| `(CPMS_[A-Z_]+)` \| `(--[a-z-]+)` \|", README, re.MULTILINE))
    assert rows == {option.env: option.flag for option in OPTIONS}


def test_the_readme_gives_the_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README
