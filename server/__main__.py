"""`python -m server`: one worker process serving one device."""

from __future__ import annotations

import logging
import sys

from access.exposure import open_warning
from access.key_file import KeyFileError
from server.app import create_app
from server.config import ServerConfig, parse_config
from server.drain import serve
from server.engine.engine import StreamingEngine
from server.engine.loading import load_model


def engine_factory(config: ServerConfig) -> StreamingEngine:
    ckpt_dir = config.ckpt_dir
    if config.random_weights and ckpt_dir is None:
        from server.engine.random_checkpoint import random_checkpoint

        logging.getLogger("server").warning(
            "serving RANDOM WEIGHTS: every voice is noise; for smoke tests only"
        )
        ckpt_dir = random_checkpoint(config.model)
    model = load_model(
        config.model,
        ckpt_dir,
        config.device,
        cpu_kernels=config.cpu_kernels,
        dtype=config.model_dtype().torch_dtype,
    )
    return StreamingEngine(model, config.engine_config())


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        app = create_app(config, lambda: engine_factory(config))
    except KeyFileError as exc:
        print(f"python -m server: error: --api-keys-file: {exc}", file=sys.stderr)
        return 2
    warning = None if config.api_keys_file else open_warning(config.host, config.port, "worker")
    if warning is not None:
        logging.getLogger("server").warning(warning)
    serve(app, app.state.worker, config)  # SIGTERM drains first: server/drain.py
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
