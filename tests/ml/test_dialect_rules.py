"""The dialect head's header rule on tables a person can judge at a glance."""

from __future__ import annotations

import pytest

from ml.format_recognition.sniff import dialect_of

PHRASES = (
    "market for customer that was in,is have not have in\n"
    "price,that for file\n"
    "south blue cafe for,with city be\n"
    "value this,this\n"
)


@pytest.mark.parametrize(
    ("text", "header"),
    [
        # Phrases above phrases: a header names its columns in a few words.
        (PHRASES, False),
        # One column of empty quoted cells: an empty cell names no column.
        ('""\n""\n""\n""\n', False),
        # Short names above phrases, with spaces in them, are a header.
        ("First Name,Home City\n" + PHRASES, True),
        ("id,name\n1,alpha\n2,beta\n", True),
        ("1,alpha\n2,beta\n3,gamma\n", False),
    ],
)
def test_the_header_rule(text: str, header: bool) -> None:
    guess, _ = dialect_of(text)
    assert (guess.delimiter, guess.header) == (",", header)
