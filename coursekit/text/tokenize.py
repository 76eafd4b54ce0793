"""A character tokenizer for the character-level language models of Chapter 7.

Interface (stable; Chapter 10's watermark builds on it):

* ``CharTokenizer.from_text(train_text)`` builds the vocabulary from the *training* split only: id 0
  is ``<unk>``, ids 1..V-1 are the distinct characters of the text in sorted (code point) order.
* ``encode(text) -> list[int]`` maps each character to its id; a character never seen in training
  becomes ``unk_id`` (0).
* ``decode(ids) -> str`` maps ids back; ``unk_id`` becomes ``UNK_CHAR`` (U+FFFD).
* ``vocab_size`` (V, counting ``<unk>``), ``unk_id``, ``chars`` (the id -> character list).
* ``to_dict()`` / ``CharTokenizer.from_dict(d)`` save and restore it (for checkpoints).

Every model of the chapter predicts a distribution over these V ids, so bits per character of two
models are comparable only when they share one tokenizer and one split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["CharTokenizer", "UNK", "UNK_CHAR"]

UNK = "<unk>"          # the name of id 0
UNK_CHAR = "\ufffd"    # what ``decode`` writes for id 0 (the Unicode replacement character)


class CharTokenizer:
    """Characters <-> integer ids, with id 0 for characters unseen in training.

    Args:
        chars: the distinct characters, in id order starting at id 1 (id 0 is ``<unk>``).

    Example:
        >>> tok = CharTokenizer.from_text("hello world")
        >>> tok.vocab_size, tok.encode("hold!")
        (9, [4, 6, 5, 2, 0])
        >>> tok.decode(tok.encode("hold!"))
        'hold\ufffd'
    """

    unk_id = 0

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"chars must be single characters, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct; duplicates: "
                             f"{sorted({c for c in chars if chars.count(c) > 1})[:5]!r}")
        self.chars = [UNK] + chars                               # id -> token
        self._index = {c: i for i, c in enumerate(chars, start=1)}  # char -> id

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from ``text`` (the training split): one id per distinct character."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"need a non-empty training text, got {type(text).__name__} "
                             f"of length {len(text) if isinstance(text, str) else 'n/a'}")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """V: the number of ids, ``<unk>`` included."""
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """The ids of the characters of ``text`` (unseen characters -> ``unk_id``)."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        get = self._index.get
        return [get(c, 0) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; ``unk_id`` becomes ``UNK_CHAR``."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.chars):
                raise ValueError(f"id {i} is outside the vocabulary [0, {len(self.chars)})")
            out.append(UNK_CHAR if i == 0 else self.chars[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"chars": "".join(self.chars[1:])}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        return cls(list(d["chars"]))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
