"""A labelled file for training and evaluation: its head, tail, name and the truth about it."""

from __future__ import annotations

from dataclasses import dataclass

from ml.format_recognition.recognition import DialectGuess

HEAD_KEEP = 64 * 1024  # what the converter reads of a file's head
TAIL_KEEP = 1024


@dataclass
class Sample:
    head: bytes
    tail: bytes
    name: str | None
    label: str  # one of FORMATS
    source: str  # the generator or package it came from (splits are by source)
    dialect: DialectGuess | None = None  # the truth, for delimited text with known dialect
    encoding: str | None = None

    @classmethod
    def of(cls, data: bytes, name: str | None, label: str, source: str, **kw: object) -> Sample:
        """A sample from a file's whole bytes."""
        tail = data[-TAIL_KEEP:] if len(data) > HEAD_KEEP else data[-TAIL_KEEP:]
        return cls(data[:HEAD_KEEP], tail, name, label, source, **kw)  # type: ignore[arg-type]
