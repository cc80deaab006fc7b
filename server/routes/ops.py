"""`GET /health` (the balancer's view of this worker) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.synthesis import spoken_languages
from server.worker import Worker, WorkerStatus


async def health(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    # 503 for plain HTTP health checks (an outer load balancer, Kubernetes): send nothing here.
    status = 503 if worker.status in (WorkerStatus.FAILED, WorkerStatus.DRAINING) else 200
    body = worker.health()
    # What `language` may be (ISO 639-1), once the model is loaded: the web app's picker.
    if (languages := spoken_languages(worker)) is not None:
        body["languages"] = list(languages)
        assert worker.runner is not None
        # Those the model has but this host cannot run (a text front-end missing), and why.
        if unavailable := worker.runner.engine.unavailable_languages:
            body["unavailable_languages"] = dict(unavailable)
    return JSONResponse(body, status_code=status)


async def metrics(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    return Response(worker.metrics.render(), media_type=CONTENT_TYPE_LATEST)
