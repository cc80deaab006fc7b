"""When pushed text becomes a segment to generate (no model)."""

from __future__ import annotations

import threading

import pytest

from server.engine.text import split_into_segments
from server.engine.text_feed import TextFeed


def test_nothing_is_taken_before_a_sentence_ends() -> None:
    feed = TextFeed()
    feed.push("Hello ")
    feed.push("there")
    assert feed.take() == [] and not feed.ready()


def test_a_sentence_end_followed_by_a_space_completes_a_segment() -> None:
    feed = TextFeed()
    for piece in ("Hello ", "there. ", "How ", "are"):
        feed.push(piece)
    assert feed.ready()
    assert feed.take() == ["Hello there."]
    assert feed.take() == []  # "How are" is still incomplete


def test_a_terminator_without_a_following_space_waits() -> None:
    # "3." may go on as "3.5": only the next piece tells.
    feed = TextFeed()
    feed.push("It costs 3.")
    assert feed.take() == []
    feed.push("5 euros. ")
    assert feed.take() == ["It costs 3.5 euros."]


def test_flush_takes_everything_buffered() -> None:
    feed = TextFeed()
    feed.push("An unfinished thought")
    feed.flush()
    assert feed.take() == ["An unfinished thought"]
    assert feed.take() == []


def test_end_takes_the_rest_then_says_none() -> None:
    feed = TextFeed()
    feed.push("Last words")
    feed.end()
    assert feed.take() == ["Last words"]
    assert feed.take() is None
    with pytest.raises(ValueError):
        feed.push("more")


def test_the_chunk_length_schedule_cuts_long_text_at_a_space() -> None:
    feed = TextFeed(schedule=(20, 40))
    feed.push("one two three four five six")  # 27 characters, no sentence end
    assert feed.take() == ["one two three four five"]
    feed.push(" seven eight nine ten eleven")  # "six seven ..." is 33 < 40: wait
    assert feed.take() == []
    feed.push(" twelve thirteen")  # 47 characters: up to the last space
    assert feed.take() == ["six seven eight nine ten eleven twelve"]


def test_text_pushed_whole_and_flushed_splits_like_the_same_text_at_once() -> None:
    text = "First sentence here. Second one! " + "A long clause, " * 30 + "the end."
    feed = TextFeed()
    feed.push(text, flush=True)
    assert feed.take() == split_into_segments(text)


def test_listeners_hear_every_change_and_waiters_wake() -> None:
    feed = TextFeed()
    heard: list[int] = []
    feed.listen(lambda: heard.append(1))
    woke = threading.Event()

    def waiter() -> None:
        feed.wait(5)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    feed.push("Hi. ")
    thread.join(5)
    feed.flush()
    feed.end()
    assert woke.is_set() and len(heard) == 3


def test_each_push_is_split_like_a_whole_text() -> None:
    feed = TextFeed()
    for piece in ("One. ", "Two! ", "Three? "):  # word by word: a segment a sentence
        feed.push(piece)
    feed.push("Four. Five. And more")  # one push: grouped like a whole text
    assert feed.take() == ["One.", "Two!", "Three?", "Four. Five."]
    feed.end()
    assert feed.take() == ["And more"]


# --- scripts other than Latin ---------------------------------------------------------------


def test_chinese_sentences_complete_without_a_space_after_the_stop() -> None:
    feed = TextFeed()
    for piece in ("你好", "。", "我", "很好"):  # a language model's tokens
        feed.push(piece)
    assert feed.take() == ["你好。"]
    feed.push("！你呢")
    assert feed.take() == ["我很好！"]
    feed.end()
    assert feed.take() == ["你呢"]


@pytest.mark.parametrize(
    ("pieces", "first"),
    [
        (["今日は", "晴れです。", "散歩"], "今日は晴れです。"),
        (["هل أنت ", "بخير؟ ", "نعم"], "هل أنت بخير؟"),
        (["यह पहला ", "वाक्य है। ", "यह"], "यह पहला वाक्य है।"),
        (["Τι ", "κάνεις\u037e ", "Καλά"], "Τι κάνεις\u037e"),
        (["Well… ", "maybe"], "Well…"),
    ],
)
def test_each_script_completes_a_segment_at_its_sentence_end(pieces: list[str], first: str) -> None:
    feed = TextFeed()
    for piece in pieces:
        feed.push(piece)
    assert feed.take() == [first]


def test_a_full_width_point_between_digits_waits() -> None:
    feed = TextFeed()
    feed.push("価格は３．")
    assert feed.take() == []
    feed.push("５円です．次")
    assert feed.take() == ["価格は３．５円です．"]


def test_a_schedule_cut_without_spaces_ends_at_a_full_width_comma() -> None:
    feed = TextFeed(schedule=(10,))
    feed.push("一二三四五，六七八九十一二")
    assert feed.take() == ["一二三四五，"]


def test_chinese_pushed_whole_splits_like_the_same_text_at_once() -> None:
    text = "第一句话。第二句话！" + "很长的一个分句，" * 50 + "完。"
    feed = TextFeed()
    feed.push(text, flush=True)
    assert feed.take() == split_into_segments(text)
