"""The `stream-assist` command: `serve` runs the service."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .bench import enhance as bench_enhance
from .bench.random_model import SHAPES
from .config import Config, ConfigError, load_config, validate
from .inference.llama_log import LOG_FORMAT
from .inference.model_source import VARIANTS, ModelFileError, ModelFiles

log = logging.getLogger("stream_assist")

CACHE_DIR = Path.home() / ".cache" / "stream-assist"


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the server (the page, WebRTC offers, the model)")
    p.add_argument("--config", type=Path, help="TOML file (configs/default.toml shows every key)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 for phones on your network)")
    p.add_argument("--port", type=int)
    p.add_argument("--model", help="local text-model GGUF (instead of downloading a variant)")
    p.add_argument("--mmproj", help="local projector GGUF, with --model")
    p.add_argument("--variant", choices=sorted(VARIANTS), help="SmolVLM variant from the hub (default 500m)")
    p.add_argument("--n-gpu-layers", type=int, help="layers on the GPU (-1: all, on a GPU build)")
    p.add_argument("--endpoint", action="append", metavar="URL",
                   help="an OpenAI-compatible server (e.g. http://gpu1:8080/v1) to run the model on instead of "
                        "this process; repeat for several (sets model.backend = openai)")
    p.add_argument("--tls-cert", type=Path, help="certificate (PEM) for HTTPS")
    p.add_argument("--tls-key", type=Path, help="private key (PEM) for HTTPS")
    p.add_argument("--self-signed", action="store_true", help="make (once) and use a self-signed certificate")
    p.add_argument("--tts", help="voice: auto (default: the packaged Piper voice with the [speech] extra, else the "
                   "page's own speech), browser, or piper:<hub voice like en_US-lessac-medium | path/to/voice.onnx>")
    p.add_argument("--asr", help="recogniser: auto (default: faster-whisper tiny.en when installed, else "
                   "pocketsphinx), pocketsphinx, faster-whisper:<tiny.en | base.en | small.en, fetched from the hub "
                   "once | path to a CTranslate2 folder> (pip install 'stream-assist[speech]'), or whisper:<ggml name "
                   "| path> (pip install 'stream-assist[whisper]')")
    p.add_argument("--source", metavar="URL|DEVICE|FILE",
                   help="a camera beside the browser, guided from start and watched from any page: rtsp(s)://, "
                        "http(s):// MJPEG or HLS, /dev/videoN, or a video file")
    p.add_argument("--loop", action="store_true", help="play a file --source again when it ends")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="record each session (what the model was shown, the guidance, task events, what was heard)")


def _model_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny",
                   help="random-weight model of this shape (made once, cached); default tiny")
    p.add_argument("--model", help="real text-model GGUF instead of a random one")
    p.add_argument("--mmproj", help="real projector GGUF, with --model")


def _enhance_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enhance", help="apply the enhancement chain to an image file (to tune settings on a photo)")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--config", type=Path, help="TOML file whose [enhancement] and [pipeline] settings apply")


def enhance(args: argparse.Namespace) -> int:
    from .enhance.image_file import enhance_file

    width, height = enhance_file(args.input, args.output, load_config(args.config))
    print(f"stream-assist: wrote {args.output} ({width}x{height}, what the model sees)")
    return 0


def _assistant_parsers(sub: argparse._SubParsersAction) -> None:
    for name, text in (("tasks", "list the task cards (configs/tasks/ and your cards dir)"),
                       ("history", "past task sessions from the journals: task, steps, time per step")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, help="TOML file whose [assistant] settings apply")
        p.add_argument("--json", action="store_true")


def tasks(args: argparse.Namespace) -> int:
    from .assistant.cards import Card, list_cards
    from .assistant.places import card_dirs, limits

    config = load_config(args.config).assistant
    found = list_cards(card_dirs(config), limits(config))
    if args.json:
        print(json.dumps([c.as_dict() if isinstance(c, Card) else {"error": str(c)} for c in found], indent=2))
        return 0
    for card in found:
        print(f"{card.name:28} {len(card.steps):>2} steps  {card.title}" if isinstance(card, Card)
              else f"{'(broken)':28} {card}")
    print(f"cards from: {', '.join(str(d) for d in card_dirs(config))}")
    return 0


def history(args: argparse.Namespace) -> int:
    from .assistant.history import format_history, past_sessions
    from .assistant.places import journal_for

    sessions = past_sessions(journal_for(load_config(args.config).assistant))
    print(json.dumps([s.as_dict() for s in sessions], indent=2) if args.json else format_history(sessions))
    return 0


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures (not tests)")
    kinds = p.add_subparsers(dest="bench", required=True)
    page = kinds.add_parser("page", help="headless Chromium page: Start → first guidance, frame counters")
    _model_choice(page)
    page.add_argument("--seconds", type=float, default=20.0)
    page.add_argument("--chromium", default=None, help="browser binary (default /usr/bin/chromium)")
    page.add_argument("--camera", choices=("fake", "pattern"), default="fake",
                      help="Chromium's fake camera, or the page's test pattern carrying capture times in its pixels")
    page.add_argument("--tts", default="auto", help="voice, as serve --tts (auto: the server's when installed)")
    page.add_argument("--json", action="store_true")
    model = kinds.add_parser("model", help="model phases per frame: JPEG/raw, tiles/overview, prompt cache")
    _model_choice(model)
    model.add_argument("--image-size", type=int, default=512, help="frame width in pixels (4:3)")
    model.add_argument("--mmproj-type", choices=("f16", "q8_0"), default=None,
                       help="precision of the random projector (default f16; tiny: f32)")
    model.add_argument("--repeats", type=int, default=3)
    model.add_argument("--max-tokens", type=int, default=32)
    model.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all cores)")
    model.add_argument("--overview-only", action="store_true", help="skip the all-tiles ways (minutes on a CPU)")
    model.add_argument("--json", action="store_true")
    load = kinds.add_parser("load", help="N synthetic WebRTC clients into a real server: latency, drops, CPU")
    _model_choice(load)
    load.add_argument("--clients", type=int, default=4)
    load.add_argument("--size", default="640x480", help="WxH of the synthetic video")
    load.add_argument("--fps", type=float, default=15.0)
    load.add_argument("--seconds", type=float, default=20.0)
    load.add_argument("--queue", choices=("slot", "fifo"), default="slot")
    load.add_argument("--threads", type=int, default=0, help="llama.cpp threads in the server (0: all cores)")
    load.add_argument("--endpoints", type=int, default=0,
                      help="run the model in this many llama_cpp.server processes (--threads each, default 1) and "
                           "reach them with the openai backend (needs llama-cpp-python[server])")
    load.add_argument("--video", type=Path, help="the clients stream this file's frames (a recording's .mkv, or any "
                      "video) instead of a generated pattern")
    load.add_argument("--json", action="store_true")
    live = kinds.add_parser("live", help="the same model isolated and in the live server with a streaming client")
    _model_choice(live)
    live.add_argument("--size", default="640x480", help="WxH of the client's video and of the frames asked about")
    live.add_argument("--fps", type=float, default=15.0)
    live.add_argument("--seconds", type=float, default=30.0, help="live window after the first guidance")
    live.add_argument("--repeats", type=int, default=3, help="isolated answers per mode (after one warm-up)")
    live.add_argument("--max-tokens", type=int, default=48)
    live.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all cores)")
    live.add_argument("--isolated", default="main", help="comma-separated: main, thread, child (where the "
                      "isolated model is called from: main thread, a second thread, a model process)")
    live.add_argument("--live-process", choices=("child", "inline"), default="child",
                      help="model.process of the live server")
    live.add_argument("--video", type=Path, help="the client streams this file's frames (a recording's .mkv, or any "
                      "video) instead of a generated pattern")
    live.add_argument("--card", default="", help="follow this task card: every frame asks whether its step is done")
    live.add_argument("--json", action="store_true")
    source = kinds.add_parser("source", help="camera source and recordings: RTSP frame → model input, decode CPU, "
                                             "reconnect time, recording cost, replay --fast speed")
    _model_choice(source)
    source.add_argument("--seconds", type=float, default=10.0, help="each measured window")
    source.add_argument("--reconnects", type=int, default=3)
    source.add_argument("--json", action="store_true")
    soak = kinds.add_parser("soak", help="connect/stream/disconnect cycles: memory, thread and fd growth")
    _model_choice(soak)
    soak.add_argument("--cycles", type=int, default=200)
    soak.add_argument("--json", action="store_true")
    enh = kinds.add_parser("enhance", help="enhancement: our Numba kernels vs OpenCV vs the NumPy reference")
    bench_enhance.add_arguments(enh)
    assist = kinds.add_parser("assist", help="task assistant: step tracking rules and our speech policy vs saying "
                                             "every new answer; journal durability under SIGKILL")
    assist.add_argument("--error", type=float, action="append", help="describer error rate (repeatable; "
                                                                       "default 0 and 0.2)")
    assist.add_argument("--tasks", type=int, default=30, help="scripted tasks per error rate")
    assist.add_argument("--period", type=float, action="append", help="seconds between model answers "
                                                                       "(repeatable; default 0.1 and 2)")
    assist.add_argument("--done-frames", type=int, default=2, help="the streak rule: answers in a row that advance")
    assist.add_argument("--describer-error", type=float, help="the evidence rule's assumed error rate")
    assist.add_argument("--advance-odds", type=float, help="the evidence rule's odds for an advance")
    assist.add_argument("--kills", type=int, default=20, help="SIGKILLs of a journal writer")
    assist.add_argument("--seed", type=int, default=1)
    assist.add_argument("--json", action="store_true")
    voice = kinds.add_parser("voice", help="hearing the person: command accuracy, false accepts, latency, CPU")
    _model_choice(voice)
    voice.add_argument("--repeats", type=int, default=10, help="spoken commands in the live part")
    voice.add_argument("--asr", action="append", help="recogniser, as serve --asr, repeatable: measured side by side "
                       "(default: pocketsphinx and auto); whisper:random is a random-weight whisper.cpp model made "
                       "here (its text is noise: for the costs only)")
    voice.add_argument("--json", action="store_true")
    speak = kinds.add_parser("speak", help="the server's voice: synthesis cost, its echo through a loudspeaker, "
                                           "pause over it, guidance → first sample, barge-in")
    _model_choice(speak)
    speak.add_argument("--tts", default="piper:joe", help="voice, as serve --tts (default the packaged one)")
    speak.add_argument("--echo-minutes", type=float, default=10.0, help="guidance through the simulated room")
    speak.add_argument("--double-talk", type=int, default=40, help="'pause's said over the voice in the room")
    speak.add_argument("--trials", type=int, default=10, help="live utterances and barge-ins over WebRTC")
    speak.add_argument("--json", action="store_true")
    proj = kinds.add_parser("projector", help="F16 vs Q8_0 projector: encode time and embedding difference")
    proj.add_argument("--shape", choices=sorted(SHAPES), default="500m")
    proj.add_argument("--image-size", type=int, default=512)
    proj.add_argument("--repeats", type=int, default=3)
    proj.add_argument("--threads", type=int, default=0)


def bench_model_files(args: argparse.Namespace) -> ModelFiles:
    """Real files when given, else a random-weight pair of the chosen shape from the cache."""
    from .bench.random_model import write_pair
    from .inference.model_source import check_gguf

    if args.model or args.mmproj:
        if not (args.model and args.mmproj):
            raise ValueError("--model and --mmproj go together")
        return ModelFiles(check_gguf(Path(args.model), "model"), check_gguf(Path(args.mmproj), "mmproj"), "local")
    text, mmproj = write_pair(CACHE_DIR / "random-models", args.shape, quantized=args.shape != "tiny",
                              mmproj_precision=getattr(args, "mmproj_type", None))
    return ModelFiles(text, mmproj, f"random {args.shape}")


def _bench_asr(asr: str) -> str:
    """The recogniser to measure: whisper:random becomes a random-weight model written to the cache."""
    if asr != "whisper:random":
        from .voice.recognisers import checked_asr

        return checked_asr(asr)
    from .bench.random_whisper import write_random_whisper

    return f"whisper:{write_random_whisper(CACHE_DIR / 'random-models' / 'ggml-random-whisper.bin')}"


def bench(args: argparse.Namespace) -> int:
    from .bench import model as bench_model
    from .bench import page as bench_page
    from .bench.random_model import write_pair

    config = Config()
    if args.bench == "enhance":
        return bench_enhance.main(args)
    if args.bench == "assist":
        from .bench import assist as bench_assist

        assistant = config.assistant
        assistant.done_frames = args.done_frames
        assistant.describer_error = args.describer_error or assistant.describer_error
        assistant.advance_odds = args.advance_odds or assistant.advance_odds
        return bench_assist.main(args.error or [0.0, 0.2], args.tasks, args.period or [0.1, 2.0], assistant,
                                 args.kills, args.seed, args.json)
    if args.bench == "projector":
        config.model.n_threads = args.threads
        directory = CACHE_DIR / "random-models"
        text, f16 = write_pair(directory, args.shape, quantized=args.shape != "tiny", mmproj_precision="f16")
        _, q8 = write_pair(directory, args.shape, quantized=args.shape != "tiny", mmproj_precision="q8_0")
        result = bench_model.compare_projectors(ModelFiles(text, f16, "random"), q8, config.model, args.image_size,
                                                args.repeats)
        print(json.dumps(result, indent=2))
        return 0
    files = bench_model_files(args)
    if args.bench == "source":
        from .bench import source as bench_source

        return bench_source.main(files, args.seconds, args.reconnects, args.json)
    if args.bench == "soak":
        from .bench import soak as bench_soak

        return bench_soak.main(files, args.cycles, args.json)
    if args.bench == "speak":
        from .bench import speech_out as bench_speak
        from .speech_out import load_voice

        config.speech.tts = args.tts
        voice = load_voice(validate(config).speech)
        if voice is None:
            raise ValueError("bench speak needs a server voice: --tts piper:<voice>")
        return bench_speak.main(files, voice, args.echo_minutes, args.double_talk, args.trials, args.json)
    if args.bench == "voice":
        from .bench import voice as bench_voice

        asrs = dict.fromkeys(_bench_asr(a) for a in args.asr or ["pocketsphinx", "auto"])  # in order, once each
        return bench_voice.main(files, args.repeats, args.json, list(asrs))
    if args.bench == "load":
        from .bench import load as bench_load

        width, height = (int(v) for v in args.size.lower().split("x"))
        return bench_load.main(files, args.clients, (width, height), args.fps, args.seconds, args.queue, args.threads,
                               args.json, args.endpoints, args.video)
    if args.bench == "live":
        from .bench import live as bench_live

        width, height = (int(v) for v in args.size.lower().split("x"))
        config.model.n_ctx, config.model.max_tokens, config.model.n_threads = 4096, args.max_tokens, args.threads
        config.model.timeout_s = 600.0  # a loaded machine must slow the figures, not end the run
        modes = [m.strip() for m in args.isolated.split(",") if m.strip()]
        if not set(modes) <= set(bench_live.ISOLATED):
            raise ValueError(f"--isolated takes {', '.join(bench_live.ISOLATED)}")
        return bench_live.main(files, validate(config).model, (width, height), args.fps, args.seconds, args.repeats,
                               modes, args.live_process, args.json, args.card, args.video)
    if args.bench == "model":
        config.model.n_ctx, config.model.max_tokens, config.model.n_threads = 4096, args.max_tokens, args.threads
        return bench_model.main(files, validate(config).model, args.image_size, args.repeats, args.json,
                                args.overview_only)
    config.speech.tts = args.tts
    return bench_page.main(files, validate(config), args.seconds, args.chromium or bench_page.default_chromium(),
                           args.camera, args.json)


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    """Command-line flags win over the config file (serve's; replay has the model's only)."""
    if getattr(args, "host", None) is not None:
        config.server.host = args.host
    if getattr(args, "port", None) is not None:
        config.server.port = args.port
    if args.model is not None or args.mmproj is not None:
        config.model.model_path = args.model or ""
        config.model.mmproj_path = args.mmproj or ""
    if args.variant is not None:
        config.model.variant = args.variant
    if args.n_gpu_layers is not None:
        config.model.n_gpu_layers = args.n_gpu_layers
    if args.endpoint:
        config.model.backend = "openai"
        config.openai.endpoints = ",".join(args.endpoint)
    if getattr(args, "asr", None) is not None:
        config.voice.asr = args.asr
    if getattr(args, "source", None) is not None:
        config.source.url = args.source
    if getattr(args, "loop", False):
        config.source.loop = True
    if getattr(args, "record", None) is not None:
        config.record.dir = str(args.record)
    if getattr(args, "tts", None) is not None:
        config.speech.tts = args.tts
    return validate(config)


def _local_addresses() -> list[str]:
    import ifaddr

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                found.append(ip.ip)
    return found


def urls_to_open(host: str, port: int, tls: bool) -> list[str]:
    scheme = "https" if tls else "http"
    hosts = ["127.0.0.1", *_local_addresses()] if host in ("0.0.0.0", "") else [host]
    return [f"{scheme}://{h}:{port}/" for h in hosts]


def _ssl_context(args: argparse.Namespace, host: str):  # noqa: ANN202 - ssl.SSLContext | None
    from .server.tls import make_self_signed, ssl_context

    if args.self_signed:
        names = ["localhost", "127.0.0.1", *_local_addresses()] + ([host] if host not in ("0.0.0.0", "") else [])
        cert, key = make_self_signed(CACHE_DIR / "tls", names)
        return ssl_context(cert, key)
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        return ssl_context(args.tls_cert, args.tls_key)
    return None


async def _serve_until_signal(app, config: Config, context, token: str | None) -> None:  # noqa: ANN001
    """Serves until SIGINT or SIGTERM, then runs the app's shutdown (sessions closed, model freed)."""
    import asyncio
    import signal

    from .server.access import qr_text
    from .server.app import start_site

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the URLs are printed: a stop as soon as they show is clean
        loop.add_signal_handler(sig, stop.set)
    runner, port = await start_site(app, config.server.host, config.server.port, context)
    urls = [url + (f"?token={token}" if token else "") for url in urls_to_open(config.server.host, port,
                                                                               context is not None)]
    for url in urls:
        print(f"stream-assist: open {url}", flush=True)
    if token:
        print(f"stream-assist: an access token is required from other machines; scan to open {urls[-1]}")
        print(qr_text(urls[-1]), flush=True)
        if context is None:
            print("stream-assist: phones allow the camera only over HTTPS: add --self-signed", flush=True)
    await stop.wait()
    log.info("stopping: closing sessions and freeing the model")
    await runner.cleanup()
    log.info("stopped")


def check_source(url: str, loop: bool) -> None:
    """Opens the source and decodes a frame before the model loads: a wrong URL, an unknown codec or a busy
    webcam is a one-line error now (exit 2), not a retry loop; once serving, a drop is retried with back-off."""
    from .source.player import SourceError, probe
    from .source.spec import parse_source

    spec = parse_source(url, loop)
    try:
        width, height, codec = probe(spec)
    except SourceError as e:
        raise ValueError(str(e)) from None
    print(f"stream-assist: source {spec.shown}: {codec} {width}x{height}", flush=True)


def load_model(config: Config):  # noqa: ANN201 - the embedded or remote model, and its name
    """The model serve and replay use: the [openai] endpoints, or the embedded model (downloaded if need be)."""
    from .inference.model_process import embedded_model
    from .inference.model_source import resolve
    from .inference.remote_model import RemoteModel

    if config.model.backend == "openai":
        return RemoteModel(config.openai, config.model), config.openai.endpoints
    files = resolve(config.model)
    return embedded_model(files, config.model), files.text.name


def _replay_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="run a recording through today's pipeline and model; print the new guidance "
                                      "beside the recorded")
    p.add_argument("recording", type=Path, help="a recording's .mkv or .jsonl (serve --record DIR)")
    p.add_argument("--fast", action="store_true", help="every frame, as fast as the model answers (default: at the "
                                                       "recorded times, through the change gate and the slot)")
    p.add_argument("--prompt", help="ask this instead of the recorded question")
    p.add_argument("--out", type=Path, help="write each frame's recorded and new answer here as JSON lines")
    p.add_argument("--config", type=Path, help="TOML file ([model], [pipeline] settings apply)")
    p.add_argument("--model", help="local text-model GGUF")
    p.add_argument("--mmproj", help="local projector GGUF, with --model")
    p.add_argument("--variant", choices=sorted(VARIANTS))
    p.add_argument("--n-gpu-layers", type=int)
    p.add_argument("--endpoint", action="append", metavar="URL", help="an OpenAI-compatible server (repeatable)")


def replay(args: argparse.Namespace) -> int:
    from .inference.worker import InferenceWorker
    from .record.reading import open_recording
    from .record.replay import Replayed, replay

    recording = open_recording(args.recording)  # a missing or foreign recording: an error before the model loads
    config = apply_overrides(load_config(args.config), args)
    model, name = load_model(config)
    worker = InferenceWorker(model)
    worker.start()
    out = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115 - closed below

    def show(r: Replayed) -> None:
        now = r.now if r.now is not None else f"({r.skipped})"
        print(f"#{r.n:<4} {r.pts_ms / 1000:7.2f} s  recorded: {r.recorded!r}\n{'':15}now:      {now!r}", flush=True)
        if out is not None:
            out.write(json.dumps(r.as_dict(), ensure_ascii=False) + "\n")

    started = time.monotonic()
    try:
        results = replay(recording, worker, config, args.fast, args.prompt, show)
    finally:
        worker.stop()
        model.close()
        if out is not None:
            out.close()
    answered = [r for r in results if r.now is not None]
    same = sum(r.now == r.recorded for r in answered)
    print(f"stream-assist: {len(results)} frames, {len(answered)} answered ({same} as recorded), "
          f"{sum(r.skipped == 'unchanged' for r in results)} unchanged, {sum(r.skipped == 'dropped' for r in results)} "
          f"dropped, in {time.monotonic() - started:.1f} s with {name}")
    return 0


def serve(args: argparse.Namespace) -> int:
    import asyncio

    from .inference.model_source import resolve
    from .inference.worker import InferenceWorker
    from .server.app import ServerState, make_app
    from .speech_out import load_voice

    config = apply_overrides(load_config(args.config), args)
    if config.voice.enabled:
        from .voice.recognisers import checked_asr

        config.voice.asr = checked_asr(config.voice.asr)  # a named model is downloaded and tried now, not mid-session
    context = _ssl_context(args, config.server.host)
    if config.source.url:
        check_source(config.source.url, config.source.loop)
    if config.model.backend != "openai":
        resolve(config.model)  # a missing model file is a one-line error before anything loads
    voice = load_voice(config.speech)  # and a bad voice one before the model loads
    model, name = load_model(config)
    worker = InferenceWorker(model)
    worker.start()
    state = ServerState(config, worker, name, voice)
    asyncio.run(_serve_until_signal(make_app(state), config, context, state.token))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stream-assist", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _bench_parser(sub)
    _enhance_parser(sub)
    _assistant_parsers(sub)
    _replay_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    for noisy in ("aioice", "aiortc"):  # per-candidate ICE chatter at INFO
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return {"serve": serve, "bench": bench, "enhance": enhance, "tasks": tasks,
                "history": history, "replay": replay}[args.command](args)
    except (ConfigError, ModelFileError, ValueError) as e:
        print(f"stream-assist: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the port is taken
        print(f"stream-assist: error: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
