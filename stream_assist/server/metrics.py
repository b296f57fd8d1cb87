"""Prometheus metrics (`GET /metrics`), fed by the same timelines the guidance messages carry.

Latencies are observed once per guidance from its frame's timeline; frame counters are read from the
sessions at scrape time (plus the totals of sessions already closed), so the hot path adds nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..inference.vision_model import Generation
from ..latency.timeline import Timeline

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _SessionCounters:
    """Collector for the per-session frame counters and the number of open sessions."""

    def __init__(self, live: Callable[[], Iterable[dict[str, int]]], retired: Counter) -> None:
        self._live = live
        self._retired = retired

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        totals = Counter(self._retired)
        sessions = 0
        for counters in self._live():
            totals.update(counters)
            sessions += 1
        frames = CounterMetricFamily("stream_assist_frames", "Frames by what happened to them", labels=["event"])
        for event, value in sorted(totals.items()):
            frames.add_metric([event], value)
        yield frames
        yield GaugeMetricFamily("stream_assist_sessions", "Open sessions", value=sessions)


class _Endpoints:
    """Collector for the remote inference endpoints' state (none with the embedded model)."""

    def __init__(self, snapshot: Callable[[], list[dict]]) -> None:
        self._snapshot = snapshot

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        up = GaugeMetricFamily("stream_assist_endpoint_up", "1 when the endpoint passed its last check", labels=["url"])
        busy = GaugeMetricFamily("stream_assist_endpoint_in_flight", "Requests at the endpoint now", labels=["url"])
        requests = CounterMetricFamily("stream_assist_endpoint_requests", "Requests ended", labels=["url"])
        failures = CounterMetricFamily("stream_assist_endpoint_failures", "Requests failed", labels=["url"])
        for e in self._snapshot():
            up.add_metric([e["url"]], float(e["healthy"]))
            busy.add_metric([e["url"]], e["in_flight"])
            requests.add_metric([e["url"]], e["requests"])
            failures.add_metric([e["url"]], e["failures"])
        yield from (up, busy, requests, failures)


class _UpAndRestarts:
    """Collector for a part that is up or not and comes back after failing: the embedded model's own process (none
    inline), the camera source (none without one)."""

    def __init__(self, report: Callable[[], dict | None], name: str, up_help: str, restarts_help: str,
                 is_up: Callable[[dict], bool], restarts_key: str) -> None:
        self._report = report
        self._name, self._up_help, self._restarts_help = name, up_help, restarts_help
        self._is_up, self._restarts_key = is_up, restarts_key

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        state = self._report()
        if state is None:
            return
        yield GaugeMetricFamily(f"{self._name}_up", self._up_help, value=float(self._is_up(state)))
        yield CounterMetricFamily(f"{self._name}_{self._restarts_key}", self._restarts_help,
                                  value=state[self._restarts_key])


class Metrics:
    """One registry per server, so several servers in one process (tests, benchmarks) stay apart."""

    def __init__(self, live_counters: Callable[[], Iterable[dict[str, int]]],
                 endpoints: Callable[[], list[dict]] = list,
                 model_process: Callable[[], dict | None] = lambda: None,
                 source: Callable[[], dict | None] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        self.retired: Counter = Counter()
        self.registry.register(_SessionCounters(live_counters, self.retired))
        self.registry.register(_Endpoints(endpoints))
        self.registry.register(_UpAndRestarts(
            model_process, "stream_assist_model_process", "1 while the model process runs",
            "Model processes started after one died or hung", lambda s: bool(s["alive"]), "restarts"))
        self.registry.register(_UpAndRestarts(
            source, "stream_assist_source", "1 while the camera source delivers frames",
            "Times the camera source dropped and came back", lambda s: s["state"] == "live", "reconnects"))
        self.stage = Histogram("stream_assist_stage_seconds", "Time from the previous stage to this one",
                               ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        def latency(name: str, doc: str) -> Histogram:
            return Histogram(f"stream_assist_{name}_seconds", doc, buckets=LATENCY_BUCKETS, registry=self.registry)

        self.frame_age = latency("frame_age_at_inference", "Age of a frame (since decode) when the model starts on it")
        self.decoded_to_sent = latency("decoded_to_sent", "Decoded frame to guidance sent, model included")
        self.speech_start = latency("speech_start",
                                    "Text handed to the server voice to its first sample leaving on the audio track")
        self.speech_out = latency("speech_out",
                                  "Decoded frame to the first sample of its spoken guidance leaving the server")
        self.generation_tps = Gauge("stream_assist_generation_tokens_per_second",
                                    "Generated tokens per second of the latest answer", registry=self.registry)
        self.prompt_tps = Gauge("stream_assist_prompt_tokens_per_second",
                                "Prompt tokens evaluated per second (image included) of the latest answer",
                                registry=self.registry)

    def observe(self, timeline: Timeline, gen: Generation) -> None:
        """Records one guidance's timeline and model speed."""
        for stage, ms in timeline.durations_ms().items():
            self.stage.labels(stage).observe(ms / 1000)
        marks = timeline.marks
        if "inference_start" in marks and "decoded" in marks:
            self.frame_age.observe(marks["inference_start"] - marks["decoded"])
        if "sent" in marks and "decoded" in marks:
            self.decoded_to_sent.observe(marks["sent"] - marks["decoded"])
        generating = gen.done_at - gen.first_token_at
        if gen.completion_tokens > 1 and generating > 0:
            self.generation_tps.set((gen.completion_tokens - 1) / generating)
        prefill = gen.first_token_at - gen.started_at
        evaluated = gen.prompt_tokens - gen.reused_tokens
        if prefill > 0:
            self.prompt_tps.set(evaluated / prefill)

    def observe_speech(self, ready_to_start_s: float, timeline: Timeline | None) -> None:
        """Records one utterance's start: from its text, and (for a frame's guidance) from the frame."""
        self.speech_start.observe(max(0.0, ready_to_start_s))
        marks = timeline.marks if timeline is not None else {}
        if "speech_out" in marks and "decoded" in marks:
            self.speech_out.observe(marks["speech_out"] - marks["decoded"])

    def retire(self, counters: dict[str, int]) -> None:
        """Keeps a closing session's counts in the totals."""
        self.retired.update(counters)

    def render(self) -> bytes:
        return generate_latest(self.registry)

