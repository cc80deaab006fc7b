from server.engine.text import default_token_cap, split_into_segments


def test_short_text_is_one_segment() -> None:
    assert split_into_segments("  Hello   world.  ") == ["Hello world."]


def test_empty_text_has_no_segments() -> None:
    assert split_into_segments("   ") == []


def test_sentences_are_grouped_up_to_the_limit() -> None:
    text = "One two three. Four five six! Seven eight nine? Ten."
    segments = split_into_segments(text, max_chars=30)
    assert segments == ["One two three. Four five six!", "Seven eight nine? Ten."]
    assert all(len(s) <= 30 for s in segments)


def test_a_sentence_longer_than_the_limit_is_cut_at_clauses_then_spaces() -> None:
    text = "alpha beta gamma, delta epsilon zeta eta theta iota kappa lambda mu"
    segments = split_into_segments(text, max_chars=25)
    assert all(len(s) <= 25 for s in segments)
    assert " ".join(segments) == text


def test_no_words_are_lost_in_long_text() -> None:
    words = [f"word{i}" for i in range(400)]
    text = ". ".join(" ".join(words[i : i + 7]) for i in range(0, 400, 7)) + "."
    segments = split_into_segments(text, max_chars=120)
    assert " ".join(segments).replace(".", "").split() == words


def test_token_cap_grows_with_text_and_is_bounded() -> None:
    assert default_token_cap("Hi.", 1000) < default_token_cap("Hi there, how are you?", 1000)
    assert default_token_cap("x" * 10_000, 1000) == 1000
