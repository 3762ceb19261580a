"""The HTTP service over any predict backend (FastAPI, run with uvicorn).

``POST /v1/sentiment`` labels one text or a batch; ``POST /v1/chat/completions`` (streaming too) and
``GET /v1/models`` speak the OpenAI API; ``GET /health``; the OpenAPI spec at ``/openapi.json`` (``/docs`` to try
it); a small page at ``/``.
Limits answer 413 (body size) or 422 (batch size, text length, malformed JSON), a missing or wrong key 401,
a full server 503 and a slow answer 504. Usage: ``finsent serve --model runs/x/export/merged``.
"""

import asyncio
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from finsent.calibration import ABSTAIN, UNCALIBRATED, Calibration
from finsent.completion import ParseStatus
from finsent.config import ServeConfig
from finsent.errors import ConfigError, FinsentError
from finsent.serve.backends import GREEDY, Backend, Completion, Messages, Prompt, Sampling
from finsent.serve.predict import Confidence, label_sampling, read_answer
from finsent.tasks import Task

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("finsent.serve.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class _Job:
    prompts: list[Prompt]
    future: asyncio.Future[list[Completion]]
    sampling: Sampling


@dataclass
class MicroBatcher:
    """Runs the backend on one worker thread; with ``max_prompts > 1`` it gathers the prompts of requests that
    arrive within ``wait_s`` of each other into one backend call (what makes batched generation pay off)."""

    backend: Backend
    max_prompts: int
    wait_s: float
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)

    async def complete(self, prompts: list[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        job = _Job(prompts, asyncio.get_running_loop().create_future(), sampling)
        self.queue.put_nowait(job)
        return await job.future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while sum(len(j.prompts) for j in jobs) < self.max_prompts:
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), max(deadline - loop.time(), 0)))
                except TimeoutError:
                    break
            jobs = [j for j in jobs if not j.future.done()]  # requests that timed out while queued
            for sampling in dict.fromkeys(j.sampling for j in jobs):  # one backend call per sampling setting
                await self._complete_batch([j for j in jobs if j.sampling == sampling], sampling)

    async def _complete_batch(self, jobs: list[_Job], sampling: Sampling) -> None:
        try:
            prompts = [p for j in jobs for p in j.prompts]
            completions = await asyncio.to_thread(self.backend.complete, prompts, sampling)
        except Exception as err:  # the requests in this batch fail, the service goes on
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(completions[start : start + len(job.prompts)])
            start += len(job.prompts)


class BodySizeLimit:
    """ASGI middleware: answer 413 to a request body over ``max_bytes``, declared or streamed (chunked)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        messages: list[Message] = []
        size = 0
        while not too_large:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            too_large = size > self.max_bytes
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if too_large:
            detail = f"request body over {self.max_bytes} bytes (serve.max_body_bytes)"
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def create_app(
    backend: Backend,
    cfg: ServeConfig,
    task: Task,
    model_name: str = "finsent",
    calibration: Calibration = UNCALIBRATED,
) -> FastAPI:
    """Return the FastAPI app serving ``backend`` under the limits of ``cfg``; ``task`` prompts the model as in
    training, masks what training masked, and parses answers against its labels; ``calibration``'s temperature
    scales the label probabilities, and below ``cfg.min_confidence`` the label is ``abstain``."""
    labels = ", ".join(task.labels) if task.labels else "no label set (free-form answers)"
    confidence = Confidence(calibration=calibration, min_confidence=cfg.min_confidence)
    scoring = label_sampling(task, confidence)
    api_key = _read_api_key(cfg.api_key_env)
    batcher = MicroBatcher(
        backend, cfg.micro_batch_size if cfg.use_micro_batching else 1, cfg.micro_batch_wait_ms / 1000
    )
    in_flight = 0
    created = int(time.time())
    Text = Annotated[str, StringConstraints(min_length=1, max_length=cfg.max_text_chars)]

    class SentimentRequest(BaseModel):
        """One ``text`` or a batch of ``texts``."""

        model_config = ConfigDict(extra="forbid")
        text: Text | None = None
        texts: list[Text] | None = Field(default=None, min_length=1, max_length=cfg.max_batch_size)

        @model_validator(mode="after")
        def _one_of(self) -> Self:
            if (self.text is None) == (self.texts is None):
                raise ValueError("give either text (one) or texts (a batch)")
            return self

    class Sentiment(BaseModel):
        label: str | None = Field(
            description=f"One of {labels}; {ABSTAIN} when less sure than serve.min_confidence; null when the answer "
            "names none."
        )
        display_name: str = Field(description="The label as people read it (a category's name).")
        reasoning: str
        status: ParseStatus = Field(description="ok: the answer followed the format; fallback; missing.")
        probabilities: dict[str, float] | None = Field(
            description="Each label's probability after <answer> (temperature-scaled where calibrated); null when "
            "the backend gives none or the answer has no <answer> tag."
        )
        confidence: float | None = Field(description="The probability of the model's own label.")
        model_label: str | None = Field(description="The model's own label (differs from label when abstaining).")
        latency_ms: float

    class SentimentBatch(BaseModel):
        results: list[Sentiment]
        latency_ms: float

    class ChatMessage(BaseModel):
        role: Literal["system", "user", "assistant"]
        content: Text

    class ChatRequest(BaseModel):
        """OpenAI chat-completions; other OpenAI fields are accepted and ignored."""

        model_config = ConfigDict(extra="allow")
        model: str | None = None
        messages: list[ChatMessage] = Field(min_length=1)
        stream: bool = Field(default=False, description="Send the reply as server-sent chat.completion.chunk events.")
        max_tokens: int | None = Field(default=None, ge=1, description="Clamped to serve.max_tokens.")
        max_completion_tokens: int | None = Field(default=None, ge=1, description="The same as max_tokens.")
        temperature: float | None = Field(
            default=None, ge=0, le=2, description="Clamped to serve.max_temperature; unset is 0 (greedy)."
        )

    async def require_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    async def generate(prompts: list[Prompt], sampling: Sampling = GREEDY) -> list[Completion]:
        nonlocal in_flight
        if in_flight >= cfg.max_concurrency:
            detail = f"server busy: {in_flight} requests in flight (serve.max_concurrency)"
            raise HTTPException(503, detail, headers={"Retry-After": "1"})
        in_flight += 1
        try:
            return await asyncio.wait_for(batcher.complete(prompts, sampling), cfg.request_timeout_s)
        except TimeoutError as err:
            raise HTTPException(
                504, f"no answer within {cfg.request_timeout_s:g} s (serve.request_timeout_s)"
            ) from err
        except FinsentError as err:
            raise HTTPException(502, f"backend failed: {err}") from err
        finally:
            in_flight -= 1

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    app = FastAPI(
        title="finsent",
        summary="Financial sentiment with reasoning: <reasoning>...</reasoning><answer>label</answer>.",
        lifespan=lifespan,
    )

    @app.post("/v1/sentiment", dependencies=[Depends(require_key)])
    async def sentiment(body: SentimentRequest) -> Sentiment | SentimentBatch:
        """Label one text or a batch: label, reasoning, format status and latency."""
        start = time.perf_counter()
        texts = [body.text] if body.text is not None else list(body.texts or [])
        # The model learnt from masked text (transactions): it sees, and its reasoning quotes, the masked form.
        completions = await generate([task.messages(task.anonymize(text)) for text in texts], scoring)
        latency_ms = round((time.perf_counter() - start) * 1000, 3)
        results = []
        for completion in completions:
            answer = read_answer(completion, task, confidence)
            results.append(
                Sentiment(
                    label=answer.label,
                    display_name=task.display(answer.label),
                    reasoning=answer.reasoning,
                    status=answer.status,
                    probabilities=answer.probabilities,
                    confidence=answer.confidence,
                    model_label=answer.model_label,
                    latency_ms=latency_ms,
                )
            )
        return results[0] if body.text is not None else SentimentBatch(results=results, latency_ms=latency_ms)

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)], response_model=None)
    async def chat_completions(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        """OpenAI-compatible chat completion under the recipe's limits; ``stream`` sends it as server-sent events."""
        given = [{"role": m.role, "content": m.content} for m in body.messages]
        messages = chat_messages(given, task.prompt.system, cfg.use_caller_system_prompt)
        sampling = chat_sampling(body.max_completion_tokens or body.max_tokens, body.temperature, cfg)
        completion = (await generate([messages], sampling))[0]
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model or model_name}
        if body.stream:
            return StreamingResponse(chat_chunks(head, completion), media_type="text/event-stream")
        message = {"role": "assistant", "content": completion.text}
        return {
            **head,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": completion.finish_reason}],
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            },
        }

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        """The OpenAI model list: the one model served."""
        served = {"id": model_name, "object": "model", "created": created, "owned_by": "finsent"}
        return {"object": "list", "data": [served]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and what is served (no key needed)."""
        return {
            "status": "ok",
            "model": model_name,
            "in_flight": in_flight,
            "use_micro_batching": cfg.use_micro_batching,
            "temperature": calibration.temperature,
            "min_confidence": cfg.min_confidence,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    # Added before the access log, which then wraps it and logs the 413s too.
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_body_bytes)

    @app.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        response = await call_next(request)
        response.headers["x-request-id"] = request_id
        record = {
            "event": "access",
            "request_id": request_id,
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            "client": request.client.host if request.client else None,
        }
        access_logger.info(json.dumps(record))
        return response

    return app


def run_server(app: FastAPI, cfg: ServeConfig) -> None:
    """Serve ``app`` with uvicorn on ``cfg.host:cfg.port`` until interrupted (the access log is the app's own)."""
    import uvicorn

    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=False, timeout_keep_alive=5)


def chat_messages(messages: Messages, system: str, use_caller_system_prompt: bool) -> Messages:
    """Return what the model sees: the trained system prompt first, or the caller's own where the recipe allows it."""
    if use_caller_system_prompt and any(m["role"] == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system}, *(m for m in messages if m["role"] != "system")]


def chat_sampling(max_tokens: int | None, temperature: float | None, cfg: ServeConfig) -> Sampling:
    """Return the caller's sampling clamped to ``serve.max_tokens`` and ``serve.max_temperature`` (unset: greedy)."""
    return Sampling(min(max_tokens or cfg.max_tokens, cfg.max_tokens), min(temperature or 0.0, cfg.max_temperature))


def chat_chunks(head: dict[str, Any], completion: Completion) -> Iterator[str]:
    """Yield a finished completion as OpenAI ``chat.completion.chunk`` server-sent events: the role, the content,
    the finish reason, then ``[DONE]``. The backend generates whole completions, so the content is one chunk."""
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": completion.text}, None)]
    for delta, finish_reason in [*deltas, ({}, completion.finish_reason)]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"
    yield "data: [DONE]\n\n"


def _read_api_key(env: str | None) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"the API key variable {env} is not set or empty", field="serve.api_key_env", got=env)
    return key


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>finsent</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
textarea { width: 100%; font: inherit; padding: .5rem; box-sizing: border-box; }
button { font: inherit; padding: .4rem 1.2rem; margin-top: .5rem; }
#label { font-size: 1.4rem; font-weight: 600; }
.positive { color: #177245; } .negative { color: #b00020; } .neutral { color: #555; }
#error { color: #b00020; } small { color: #666; }
</style></head>
<body>
<h1>finsent</h1>
<p>Paste a financial text: the model explains its reasoning, then gives a label.</p>
<form id="form">
<textarea id="text" rows="5" required
  placeholder="Net sales rose 12% to EUR 85 million in the first quarter."></textarea>
<input id="key" type="password" placeholder="API key (if the server needs one)" autocomplete="off">
<button id="submit" type="submit">Classify</button>
</form>
<p>Label: <span id="label"></span> <small id="status"></small></p>
<p id="reasoning"></p>
<p id="error"></p>
<script>
const $ = (id) => document.getElementById(id);
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  for (const id of ["label", "status", "reasoning", "error"]) $(id).textContent = "";
  $("label").className = "";
  const headers = {"Content-Type": "application/json"};
  if ($("key").value) headers["Authorization"] = "Bearer " + $("key").value;
  try {
    const payload = JSON.stringify({text: $("text").value});
    const response = await fetch("/v1/sentiment", {method: "POST", headers, body: payload});
    const body = await response.json();
    if (!response.ok) throw new Error(response.status + ": " + JSON.stringify(body.detail));
    $("label").textContent = body.label ?? "no answer";
    $("label").className = body.label ?? "";
    const sure = body.confidence == null ? "" : Math.round(100 * body.confidence) + "% sure, ";
    $("status").textContent = "format " + body.status + ", " + sure + Math.round(body.latency_ms) + " ms";
    $("reasoning").textContent = body.reasoning;
  } catch (error) {
    $("label").textContent = ""; $("error").textContent = String(error);
  }
});
</script>
</body></html>
"""
