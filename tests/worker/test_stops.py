"""StopScanner: token bytes leave as text at once, but for a possible stop string or half a char."""

from __future__ import annotations

from cocoon.worker.backends.stops import StopScanner


def feed_all(scanner: StopScanner, pieces: list[bytes]) -> list[str]:
    return [scanner.feed(piece) for piece in pieces]


def test_text_without_stops_leaves_at_once() -> None:
    scanner = StopScanner([])
    assert feed_all(scanner, [b"The", b" capital", b" is"]) == ["The", " capital", " is"]
    assert scanner.finish() == ""
    assert not scanner.stopped


def test_a_character_split_across_tokens_waits_for_its_last_byte() -> None:
    scanner = StopScanner([])
    euro = "€".encode()
    assert feed_all(scanner, [b"1 ", euro[:1], euro[1:2], euro[2:] + b"!"]) == ["1 ", "", "", "€!"]


def test_an_unfinished_character_at_the_end_becomes_a_replacement_character() -> None:
    scanner = StopScanner([])
    assert scanner.feed("é".encode()[:1]) == ""
    assert scanner.finish() == "\ufffd"


def test_a_stop_string_inside_one_token_cuts_there() -> None:
    scanner = StopScanner(["\n\n"])
    assert scanner.feed(b"one\n\ntwo") == "one"
    assert scanner.stopped
    assert scanner.feed(b"more") == ""
    assert scanner.finish() == ""


def test_a_stop_string_across_tokens_is_held_back_and_never_sent() -> None:
    scanner = StopScanner(["END"])
    assert feed_all(scanner, [b"a E", b"N", b"D b"]) == ["a ", "", ""]
    assert scanner.stopped


def test_a_false_start_is_released_with_the_next_token() -> None:
    scanner = StopScanner(["END"])
    assert feed_all(scanner, [b"a E", b"N", b"o"]) == ["a ", "", "ENo"]
    assert not scanner.stopped


def test_held_text_leaves_at_the_end_of_the_answer() -> None:
    scanner = StopScanner(["END"])
    assert scanner.feed(b"x EN") == "x "
    assert scanner.finish() == "EN"


def test_the_earliest_of_several_stops_wins() -> None:
    scanner = StopScanner(["cd", "b"])
    assert scanner.feed(b"abcd") == "a"
