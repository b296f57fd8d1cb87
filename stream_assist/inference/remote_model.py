"""The model behind OpenAI-compatible chat-completions endpoints (`model.backend = "openai"`).

llama.cpp's `llama-server`, llama-cpp-python's `python -m llama_cpp.server`, vLLM, SGLang and Ollama all
serve this API, so a deployment grows past one GPU by adding inference servers, not by clustering this
one. Each frame goes as a JPEG data URL to the least busy healthy endpoint (endpoint_pool), the answer
streams back token by token. The `openai` client does the HTTP, SSE and error types; its own retries are
off, because retrying on the same endpoint is the wrong move: a failed request marks its endpoint down
and raises `EndpointFailed`, and the worker sends the frame (or a newer one) elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import time
from collections.abc import Callable, Iterator

import cv2
import httpx2
import numpy as np
import openai

from ..config import ModelConfig, OpenAIConfig, endpoint_urls
from .endpoint_pool import Endpoint, EndpointPool
from .prompts import instructions
from .verdict import Choices, Verdict, from_top_logprobs
from .vision_model import Generation

TOP_LOGPROBS = 20  # alternatives asked for with the verdict token: the answer words are among the likeliest


class EndpointFailed(RuntimeError):
    """The endpoint did not answer (refused, reset, timed out, 5xx); another one may."""

    retryable = True


def jpeg_data_url(rgb: np.ndarray, quality: int) -> str:
    """An RGB frame as a `data:image/jpeg;base64,...` URL, the image form every such server accepts."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


class RemoteModel:
    """Answers frames on remote endpoints; `parallel` is how many requests it can have in flight at once."""

    def __init__(self, config: OpenAIConfig, model: ModelConfig) -> None:
        self.config = config
        self.model_config = model
        urls = endpoint_urls(config)
        timeout = openai.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._clients = {url: openai.OpenAI(base_url=url, api_key=config.api_key or "none", max_retries=0,
                                            timeout=timeout) for url in urls}
        self.pool = EndpointPool(urls, config.parallel, self._probe, config.health_interval_s, config.max_backoff_s)
        self.parallel = self.pool.capacity
        self.without_logprobs: set[str] = set()  # endpoints that answered a verdict request without logprobs
        self.pool.start()

    def _probe(self, endpoint: Endpoint) -> str:
        """A health check: the endpoint lists its models (GET /models); returns the name to request."""
        listed = self._clients[endpoint.url].models.list(timeout=self.config.connect_timeout_s)
        return self.config.model or (listed.data[0].id if listed.data else "default")

    @contextlib.contextmanager
    def lease(self, stopping) -> Iterator[Callable[..., Generation] | None]:  # noqa: ANN001 - threading.Event
        """Waits for room on a healthy endpoint; yields a describe function bound to it (None when stopping)."""
        endpoint = self.pool.reserve(stopping)
        if endpoint is None:
            yield None
            return
        outcome: list[str | None] = [None]
        try:
            yield functools.partial(self._describe_on, endpoint, outcome)
        finally:
            self.pool.release(endpoint, outcome[0])

    def _describe_on(self, endpoint: Endpoint, outcome: list[str | None], rgb: np.ndarray, prompt: str,
                     on_text: Callable[[str], None] | None = None, choices: Choices | None = None,
                     context: str = "") -> Generation:
        try:
            return self._request(endpoint, rgb, prompt, on_text, choices, context)
        except openai.APIStatusError as e:
            if e.status_code < 500:  # a 4xx: this request is wrong, the endpoint is fine
                raise RuntimeError(f"inference endpoint {endpoint.url} refused the request: {_reason(e)}") from e
            outcome[0] = _reason(e)
        except (openai.APIError, httpx2.TransportError, TimeoutError) as e:  # refused, reset, silent, error event
            outcome[0] = _reason(e)
        raise EndpointFailed(f"inference endpoint {endpoint.url} failed: {outcome[0]}")

    def _request(self, endpoint: Endpoint, rgb: np.ndarray, prompt: str, on_text: Callable[[str], None] | None,
                 choices: Choices | None, context: str) -> Generation:
        started = time.time()
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.config.timeout_s
        image = jpeg_data_url(rgb, self.config.jpeg_quality)
        phases = {"jpeg_encode": (time.perf_counter() - t0) * 1000.0}
        # as the embedded model: fixed instructions and context (an engine's prefix cache keeps them), the image,
        # then the question
        messages = [{"role": "system", "content": instructions(context)},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                                 {"type": "text", "text": prompt}]}]
        verdict = None
        if choices is not None and endpoint.url not in self.without_logprobs:
            verdict, prompt_tokens, text = self._one_token(endpoint, messages, choices)
            if verdict is not None and not choices.follow(verdict.word):  # the verdict word is the whole answer
                done = time.time()
                phases["request_to_first_token"] = (done - started) * 1000.0 - phases["jpeg_encode"]
                if on_text is not None:
                    on_text(text)
                return Generation(text, started, done, done, prompt_tokens, 1, image_encodes=1, phases_ms=phases,
                                  engine=endpoint.url, verdict=verdict.probs, verdict_mass=verdict.mass)
        limit = 1 + choices.follow(verdict.word) if verdict is not None else self.model_config.max_tokens
        pieces, first_at, prompt_tokens = self._stream(endpoint, messages, limit, on_text, deadline)
        done = time.time()
        first_at = first_at or done
        phases["request_to_first_token"] = (first_at - started) * 1000.0 - phases["jpeg_encode"]
        if len(pieces) > 1:
            phases["per_token"] = (done - first_at) * 1000.0 / (len(pieces) - 1)
        return Generation("".join(pieces).strip(), started, first_at, done, prompt_tokens, len(pieces),
                          image_encodes=1, phases_ms=phases, engine=endpoint.url,
                          verdict=verdict.probs if verdict else {}, verdict_mass=verdict.mass if verdict else 0.0)

    def _one_token(self, endpoint: Endpoint, messages: list, choices: Choices) -> tuple[Verdict | None, int, str]:
        """Asks for one token with its top_logprobs; an engine that gives none is asked for whole answers from then
        on (`without_logprobs`). Returns the verdict (None: write the answer), the prompt's tokens, the word."""
        reply = self._clients[endpoint.url].chat.completions.create(
            model=endpoint.model, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS,
            messages=messages)
        first = reply.choices[0] if reply.choices else None
        content = first.logprobs.content if first is not None and first.logprobs is not None else None
        if not content:
            self.without_logprobs.add(endpoint.url)
            return None, 0, ""
        verdict = from_top_logprobs(((t.token, t.logprob) for t in content[0].top_logprobs or []), choices)
        prompt_tokens = reply.usage.prompt_tokens if reply.usage is not None else 0
        return verdict, prompt_tokens, verdict.word if verdict else ""

    def _stream(self, endpoint: Endpoint, messages: list, max_tokens: int, on_text: Callable[[str], None] | None,
                deadline: float) -> tuple[list[str], float, int]:
        """The answer streamed token by token: its pieces, when the first came, the prompt's tokens."""
        stream = self._clients[endpoint.url].chat.completions.create(
            model=endpoint.model, stream=True, max_tokens=max_tokens, temperature=self.model_config.temperature,
            messages=messages)
        pieces: list[str] = []
        first_at = 0.0
        prompt_tokens = 0
        with stream:
            for chunk in stream:
                if time.monotonic() > deadline:  # the read timeout covers silence; this covers a slow trickle
                    raise TimeoutError(f"no complete answer within {self.config.timeout_s:g} s")
                if chunk.usage is not None:
                    prompt_tokens = chunk.usage.prompt_tokens
                piece = chunk.choices[0].delta.content if chunk.choices else None
                if not piece:
                    continue
                if not pieces:
                    first_at = time.time()
                pieces.append(piece)
                if on_text is not None:
                    on_text(piece)
        return pieces, first_at, prompt_tokens

    def close(self) -> None:
        self.pool.close()
        for client in self._clients.values():
            client.close()


def _reason(error: Exception) -> str:
    """A one-line cause: the status and message for an HTTP error, the exception's own words otherwise."""
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {error.message}"
    cause = error.__cause__ or error.__context__
    return f"{error}" + (f" ({type(cause).__name__}: {cause})" if cause and str(cause) else "")
