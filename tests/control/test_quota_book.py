"""control/quota_book.py: the control plane's count of requests and tokens handed out per
project and calendar minute."""

from __future__ import annotations

from control.quota_book import QuotaBook, seconds_to_reset, window_now

T = 600.0  # the start of a minute


def test_book_grants_until_the_minute_is_spent_then_starts_afresh() -> None:
    book = QuotaBook()
    assert book.grant("p", 3, 0, (1, 0), (2, 0), now=T).requests == 2
    assert book.grant("p", 3, 0, (1, 0), (2, 0), now=T + 1).requests == 1
    assert book.grant("p", 3, 0, (1, 0), (2, 0), now=T + 2).refused == "requests"
    assert book.grant("p", 3, 0, (1, 0), (1, 0), now=T + 60).requests == 1
    assert book.grant("q", 0, 50, (0, 60), (0, 5), now=T).refused == "tokens"


def test_a_grant_is_what_is_needed_or_wanted_within_what_is_left() -> None:
    book = QuotaBook()
    first = book.grant("p", 0, 100, (0, 30), (0, 10), now=T)
    assert (first.tokens, first.left_tokens, first.refused) == (30, 70, None)
    second = book.grant("p", 0, 100, (0, 10), (0, 90), now=T + 1)
    assert (second.tokens, second.left_tokens) == (70, 0)  # the wish, cut to what is left
    assert book.grant("other", 0, 100, (0, 100), (0, 0), now=T + 2).tokens == 100


def test_minutes_are_calendar_minutes() -> None:
    assert window_now(T) == window_now(T + 59.9) != window_now(T + 60)
    assert seconds_to_reset(T + 45) == 15
    assert seconds_to_reset(T + 59.99) == 1  # never 0: a client retries after it
