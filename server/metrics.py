"""The worker's Prometheus metrics, on a registry of its own (one per app, never global)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 21, 34, 60)
RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)


class WorkerMetrics:
    def __init__(self, active: Callable[[], float], queued: Callable[[], float]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tts_requests", "Requests by endpoint and outcome", ["endpoint", "outcome"], registry=r
        )
        self.errors = Counter("tts_errors", "Errors by kind", ["kind"], registry=r)
        self.active_streams = Gauge("tts_active_streams", "Requests holding the model", registry=r)
        self.active_streams.set_function(active)
        self.queue_depth = Gauge("tts_queue_depth", "Requests waiting for the model", registry=r)
        self.queue_depth.set_function(queued)
        self.queue_wait = Histogram(
            "tts_queue_wait_seconds",
            "Time waiting for the model",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_chunk = Histogram(
            "tts_time_to_first_chunk_seconds",
            "Time from request to first audio",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "tts_rtf", "Generation time / audio time per request", buckets=RTF_BUCKETS, registry=r
        )
        self.audio_seconds = Counter("tts_generated_audio_seconds", "Audio generated", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
