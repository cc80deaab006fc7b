"""The worker's configuration from flags and environment."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from server import config as config_module
from server.config import (
    DEFAULT_CPU_KERNELS,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_PROMPT_SECONDS,
    DEFAULT_MAX_STREAMS,
    DEFAULT_MODEL,
    DEFAULT_PORT,
    DEFAULT_WATERMARK,
    ENV_ALIASES,
    ENV_PREFIX,
    ServerConfig,
    build_parser,
    default_device,
    parse_config,
)
from server.engine.engine import EngineConfig
from server.engine.loading import ModelVariant

FIELDS = [f.name for f in dataclasses.fields(ServerConfig)]


def flag_actions() -> dict[str, argparse.Action]:
    """The parser's flags by the field they set."""
    return {a.dest: a for a in build_parser({})._actions if a.option_strings and a.dest != "help"}


def test_every_field_has_a_named_default_that_the_parser_also_uses() -> None:
    for name in FIELDS:
        constant = f"DEFAULT_{name.upper()}"
        assert hasattr(config_module, constant), f"{name} has no {constant}"
        assert getattr(ServerConfig(), name) == getattr(config_module, constant)
    config = parse_config([], env={})
    assert config == ServerConfig(device=default_device({}))
    assert config.device in ("cpu", "cuda:0")
    assert (config.port, config.model, config.watermark) == (6093, ModelVariant.TURBO, True)
    assert config.max_prompt_seconds == DEFAULT_MAX_PROMPT_SECONDS == 60.0


def test_every_field_is_reachable_by_a_flag_whose_help_names_its_variable() -> None:
    actions = flag_actions()
    assert set(FIELDS) <= set(actions), f"fields without a flag: {set(FIELDS) - set(actions)}"
    assert set(actions) <= set(FIELDS), f"flags without a field: {set(actions) - set(FIELDS)}"
    for name, action in actions.items():
        assert f"--{name.replace('_', '-')}" in action.option_strings
        assert action.help is not None and f"{ENV_PREFIX}{name.upper()}" in action.help
        assert "default: " in action.help
        if name in ENV_ALIASES:
            assert ENV_ALIASES[name] in action.help


def test_every_alias_belongs_to_a_field() -> None:
    assert set(ENV_ALIASES) <= set(FIELDS)
    assert ENV_ALIASES["port"] == "API_PORT" and ENV_ALIASES["max_batch"] == "MAX_BATCH"


def test_prefixed_environment() -> None:
    env = {
        "CHATTERBOX_PORT": "7000",
        "CHATTERBOX_CKPT_DIR": "/ckpt",
        "CHATTERBOX_WATERMARK": "0",
        "CHATTERBOX_DEVICE": "cuda:1",
        "CHATTERBOX_MODEL": "original",
        "CHATTERBOX_MAX_PROMPT_SECONDS": "12.5",
        "CHATTERBOX_RANDOM_WEIGHTS": "yes",
        "CHATTERBOX_LOG_LEVEL": "DEBUG",
    }
    config = parse_config([], env=env)
    assert config.port == 7000 and config.ckpt_dir == Path("/ckpt")
    assert not config.watermark and config.device == "cuda:1"
    assert config.model is ModelVariant.ORIGINAL and config.max_prompt_seconds == 12.5
    assert config.random_weights and config.log_level == "debug"


def test_old_names_are_accepted_as_aliases() -> None:
    env = {"API_PORT": "7000", "CKPT_DIR": "/ckpt", "WATERMARK": "0", "DEVICE": "cuda:1"}
    config = parse_config([], env=env)
    assert config.port == 7000 and config.ckpt_dir == Path("/ckpt")
    assert not config.watermark and config.device == "cuda:1"
    assert default_device({"DEVICE": "cuda:3"}) == "cuda:3"


# Three distinct values per field, as text: for its old name, its CHATTERBOX_ name and its flag.
PRECEDENCE = {
    "host": ("10.0.0.1", "10.0.0.2", "10.0.0.3"),
    "port": ("7001", "7002", "7003"),
    "device": ("cuda:1", "cuda:2", "cuda:3"),
    "model": ("original", "turbo", "original"),
    "ckpt_dir": ("/a", "/b", "/c"),
    "random_weights": ("off", "on", "off"),
    "voices_dir": ("/a", "/b", "/c"),
    "max_streams": ("5", "6", "7"),
    "max_queue": ("5", "6", "7"),
    "max_batch": ("5", "6", "7"),
    "max_text_chars": ("5", "6", "7"),
    "max_upload_bytes": ("5", "6", "7"),
    "max_prompt_seconds": ("5", "6", "7"),
    "watermark": ("off", "on", "off"),
    "cpu_kernels": ("off", "on", "off"),
    "first_chunk_tokens": ("5", "6", "7"),
    "log_level": ("debug", "warning", "error"),
    "max_socket_contexts": ("5", "6", "7"),
    "max_context_chars": ("5", "6", "7"),
    "drain_timeout": ("5", "6", "7.5"),
    "warmup": ("off", "on", "off"),
    "alignment_checks": ("off", "on", "off"),
    "api_keys_file": ("/a.toml", "/b.toml", "/c.toml"),
    "key_max_streams": ("5", "6", "7"),
    "restrict_ops": ("off", "on", "off"),
    "threads": ("5", "6", "7"),
    "tf32": ("off", "on", "off"),
    "dtype": ("float16", "bfloat16", "float32"),
}


def flag_argv(field: str, text: str) -> list[str]:
    option = "--" + field.replace("_", "-")
    if isinstance(getattr(ServerConfig(), field), bool):
        return [option if text == "on" else "--no-" + option[2:]]
    return [option, text]


def test_precedence_covers_every_field() -> None:
    assert set(PRECEDENCE) == set(FIELDS)


@pytest.mark.parametrize("field", sorted(PRECEDENCE))
def test_the_prefixed_name_beats_the_alias_and_a_flag_beats_both(field: str) -> None:
    def expected(text: str) -> object:
        return getattr(parse_config(flag_argv(field, text), env={}), field)

    alias, prefixed, flag = PRECEDENCE[field]
    env = {ENV_PREFIX + field.upper(): prefixed}
    if field in ENV_ALIASES:
        assert getattr(parse_config([], env={ENV_ALIASES[field]: alias}), field) == expected(alias)
        env[ENV_ALIASES[field]] = alias
    assert expected(alias) != expected(prefixed) != expected(flag)
    assert getattr(parse_config([], env=env), field) == expected(prefixed)
    assert getattr(parse_config(flag_argv(field, flag), env=env), field) == expected(flag)


def test_flags_beat_the_environment() -> None:
    env = {"CHATTERBOX_PORT": "7000", "API_PORT": "6999", "CHATTERBOX_WATERMARK": "off"}
    config = parse_config(["--port", "7001", "--watermark", "--model", "original"], env=env)
    assert config.port == 7001 and config.watermark and config.model is ModelVariant.ORIGINAL


def test_a_flag_overrides_a_bad_variable() -> None:
    assert parse_config(["--port", "7001"], env={"CHATTERBOX_PORT": "x"}).port == 7001


def test_empty_variables_count_as_unset() -> None:
    config = parse_config([], env={"CHATTERBOX_PORT": "", "API_PORT": "7000", "CKPT_DIR": ""})
    assert config.port == 7000 and config.ckpt_dir is None


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "On"])
def test_true_words(text: str) -> None:
    assert parse_config([], env={"CHATTERBOX_RANDOM_WEIGHTS": text}).random_weights


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "OFF"])
def test_false_words(text: str) -> None:
    assert not parse_config([], env={"WATERMARK": text}).watermark


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("CHATTERBOX_WATERMARK", "maybe"),
        ("CPU_KERNELS", "2"),
        ("CHATTERBOX_PORT", "port"),
        ("API_PORT", "60.5"),
        ("MAX_BATCH", "four"),
        ("CHATTERBOX_MAX_PROMPT_SECONDS", "long"),
        ("CHATTERBOX_MAX_PROMPT_SECONDS", "inf"),
        ("MODEL", "huge"),
        ("CHATTERBOX_LOG_LEVEL", "loud"),
        ("CHATTERBOX_MAX_STREAMS", "0"),
        ("MAX_QUEUE", "-1"),
        ("CHATTERBOX_MAX_PROMPT_SECONDS", "0"),
        ("CHATTERBOX_PORT", "70000"),
        ("CHATTERBOX_DRAIN_TIMEOUT", "-1"),
        ("CHATTERBOX_WARMUP", "later"),
        ("CHATTERBOX_KEY_MAX_STREAMS", "-1"),
        ("CHATTERBOX_RESTRICT_OPS", "sometimes"),
    ],
)
def test_bad_variables_are_errors_that_name_the_variable(
    name: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config([], env={name: text})
    assert exited.value.code == 2
    assert f"error: {name}" in capsys.readouterr().err


def test_max_prompt_seconds_has_a_flag() -> None:
    config = parse_config(["--max-prompt-seconds", "20"], env={})
    assert config.max_prompt_seconds == 20.0
    assert config.engine_config().max_prompt_seconds == 20.0
    assert ServerConfig().engine_config() == EngineConfig(
        first_chunk_tokens=ServerConfig().first_chunk_tokens
    )
    for bad in ("0", "-5", "nan", "x"):
        with pytest.raises(SystemExit):
            parse_config(["--max-prompt-seconds", bad], env={})


def test_nonsense_limits_are_rejected() -> None:
    for argv in (["--max-streams", "0"], ["--max-batch", "0"], ["--max-queue", "-1"]):
        with pytest.raises(SystemExit):
            parse_config(argv, env={})


def test_a_worker_batches_four_streams_by_default_and_admits_as_many() -> None:
    config = parse_config([], env={})
    assert (config.max_batch, config.max_streams, config.cpu_kernels) == (
        DEFAULT_MAX_BATCH,
        DEFAULT_MAX_STREAMS,
        DEFAULT_CPU_KERNELS,
    )
    assert (config.max_batch, config.max_streams) == (4, 4)
    serial = parse_config(["--max-batch", "1", "--no-cpu-kernels"], env={})
    assert (serial.max_batch, serial.max_streams, serial.cpu_kernels) == (1, 1, False)
    assert parse_config([], env={"MAX_BATCH": "8", "CPU_KERNELS": "0"}).max_streams == 8
    assert parse_config([], env={"CHATTERBOX_MAX_BATCH": "8"}).max_streams == 8


def test_named_defaults_match_the_help() -> None:
    actions = flag_actions()
    for name, constant in (("port", DEFAULT_PORT), ("max_batch", DEFAULT_MAX_BATCH)):
        assert f"default: {constant}]" in (actions[name].help or "")
    assert f"default: {DEFAULT_MODEL.value}]" in (actions["model"].help or "")
    assert "default: on]" in (actions["watermark"].help or "") and DEFAULT_WATERMARK
