import pytest

from server.engine.text import default_token_cap, split_into_segments, split_into_sentences


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


# --- sentence ends in every script the multilingual model speaks ------------------------------


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("你好。我很好！你呢？", ["你好。", "我很好！", "你呢？"]),
        ("今日は晴れです。散歩しましょう！", ["今日は晴れです。", "散歩しましょう！"]),
        ("これはペンです．あれは本です．", ["これはペンです．", "あれは本です．"]),
        ("「行こう。」と彼は言った。", ["「行こう。」", "と彼は言った。"]),
        ("真的吗？！太好了。", ["真的吗？！", "太好了。"]),
        ("你好!我很好.", ["你好!", "我很好."]),
        ("هل أنت بخير؟ نعم، شكرا۔ إلى اللقاء", ["هل أنت بخير؟", "نعم، شكرا۔", "إلى اللقاء"]),
        ("यह पहला वाक्य है। यह दूसरा है॥ तीसरा", ["यह पहला वाक्य है।", "यह दूसरा है॥", "तीसरा"]),
        ("Τι κάνεις\u037e Καλά, ευχαριστώ.", ["Τι κάνεις\u037e", "Καλά, ευχαριστώ."]),
        ("Wait… what? ¡Hola! Ok", ["Wait…", "what?", "¡Hola!", "Ok"]),
        ("안녕하세요. 반갑습니다!", ["안녕하세요.", "반갑습니다!"]),
        ("שלום! מה שלומך?", ["שלום!", "מה שלומך?"]),
    ],
)
def test_each_script_splits_at_its_own_sentence_ends(text: str, sentences: list[str]) -> None:
    assert split_into_sentences(text) == sentences
    longest = max(len(s) for s in sentences)
    assert all(len(s) <= longest for s in split_into_segments(text, max_chars=longest))


@pytest.mark.parametrize(
    "text",
    ["It costs 3.5 euros", "See Node.js now", "価格は３．５円", "Τι κάνεις\u037eΚαλά"],
)
def test_stops_inside_words_and_numbers_are_no_sentence_end(text: str) -> None:
    assert split_into_sentences(text) == [text]


def test_sentences_without_spaces_are_merged_without_spaces() -> None:
    assert split_into_segments("你好。我很好！你呢？") == ["你好。我很好！你呢？"]
    assert split_into_segments("一つ。 二つ。") == ["一つ。 二つ。"]  # a space typed stays


def test_long_text_without_spaces_is_cut_at_commas_then_anywhere() -> None:
    text = "一二三四五，六七八九十，" * 10 + "我" * 70
    segments = split_into_segments(text, max_chars=30)
    assert "".join(segments) == text
    assert all(len(s) <= 30 for s in segments)
    assert all(s.endswith("，") for s in segments[:3])


def test_mixed_scripts_keep_every_character_in_order() -> None:
    text = "Hello there. 你好。こんにちは！ Привет! مرحبا؟ नमस्ते। Γειά\u037e Done."
    segments = split_into_segments(text, max_chars=12)
    assert "".join(segments).replace(" ", "") == text.replace(" ", "")
    assert all(len(s) <= 12 for s in segments)
