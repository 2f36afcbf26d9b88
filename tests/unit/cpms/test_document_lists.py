"""Errors in a file of several documents name the list item they are in."""

from __future__ import annotations

import pytest

from cpms.documents import item_of
from cpms.errors import DocumentError


def test_an_error_in_a_list_names_the_item() -> None:
    with pytest.raises(DocumentError) as raised, item_of(3, 5):
        raise DocumentError("evses[0].uid", "'uid' is required")
    assert raised.value.path == "[3].evses[0].uid"
    assert str(raised.value) == "[3].evses[0].uid: 'uid' is required"


def test_an_error_in_a_single_document_keeps_its_path() -> None:
    with pytest.raises(DocumentError) as raised, item_of(0, 1):
        raise DocumentError("id", "expected a string, got number 1")
    assert raised.value.path == "id"


def test_an_error_about_a_whole_item_names_just_the_item() -> None:
    with pytest.raises(DocumentError) as raised, item_of(1, 2):
        raise DocumentError("", "expected an object")
    assert raised.value.path == "[1]"
