"""Receipt tags: a MAC under the client's response key, the same at both ends."""

from __future__ import annotations

import os

from cocoon.crypto import AnswerOpener, AnswerSealer


def test_both_ends_tag_a_receipt_alike_and_no_one_else_does() -> None:
    key = os.urandom(32)
    receipt = b"signed receipt bytes"
    tag = AnswerSealer(key, "r1").receipt_tag(receipt)
    assert len(tag) == 32
    assert AnswerOpener(key, "r1").receipt_tag(receipt) == tag
    assert AnswerOpener(key, "r2").receipt_tag(receipt) != tag  # another request
    assert AnswerOpener(os.urandom(32), "r1").receipt_tag(receipt) != tag  # another client
    assert AnswerOpener(key, "r1").receipt_tag(receipt + b"!") != tag
