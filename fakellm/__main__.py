"""``python -m fakellm``: run the stand-in LLM server (a test double) in the foreground.

    python -m fakellm --host 127.0.0.1 --port 8765 --latency-ms 200 --fault-rate 0.05
    python -m fakellm --answers mypkg.answers:make_source
    python -m fakellm --table answers.json      # TableAnswer.from_file

Point the project at it with ``OPENAI_BASE_URL=http://127.0.0.1:8765/v1`` and
``ANTHROPIC_BASE_URL=http://127.0.0.1:8765`` (any non-empty API key is accepted).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

from fakellm.answers import SchemaAnswer, TableAnswer, load_answer_source
from fakellm.server import FakeLLM


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until Ctrl-C."""
    ap = argparse.ArgumentParser(prog="python -m fakellm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--answers", metavar="PKG.MODULE:FACTORY", help="answer source factory (default SchemaAnswer)")
    src.add_argument("--table", metavar="FILE.json", help="answers table for TableAnswer.from_file")
    ap.add_argument("--latency-ms", type=int, default=0, help="added to every answer")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="share of requests given a random fault")
    ap.add_argument("--fault-kinds", default="500", help="comma list of faults for --fault-rate (e.g. 429,500,timeout)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --fault-rate draws")
    ap.add_argument("--timeout-s", type=float, default=30.0, help="how long [[fault:timeout]] sleeps")
    ap.add_argument("--rpm-limit", type=int, default=0, help="429 above this many requests per --rate-window-s")
    ap.add_argument("--rate-window-s", type=float, default=60.0, help="the window of --rpm-limit (default 60)")
    args = ap.parse_args(argv)
    try:
        if args.answers:
            source = load_answer_source(args.answers)
        elif args.table:
            source = TableAnswer.from_file(args.table)
        else:
            source = SchemaAnswer()
    except Exception as exc:  # a clear one-line error, not a traceback
        print(f"fakellm: cannot load answers: {exc}", file=sys.stderr)
        return 2
    fake = FakeLLM(source, host=args.host, port=args.port, latency_ms=args.latency_ms,
                   fault_rate=args.fault_rate, fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k),
                   seed=args.seed, timeout_s=args.timeout_s, rpm_limit=args.rpm_limit,
                   rate_window_s=args.rate_window_s)
    try:
        fake.serve_forever(ready=lambda url: print(f"fakellm (stand-in LLM, a test double) on {url}", flush=True))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"fakellm: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def keep_alive_server(latency_ms: int = 0, threads: int = 64) -> Iterator[str]:
    """Serve :func:`wsgi` with gunicorn's threaded worker on a free 127.0.0.1 port, in its own process;
    yields its URL (``/v1`` for the openai SDK) once it answers, and stops it afterwards."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", str(threads), "-w", "1",
                             "--keep-alive", "75", "--log-level", "warning", "-b", f"127.0.0.1:{port}",
                             f"fakellm.__main__:wsgi(latency_ms={int(latency_ms)})"],
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def wsgi(latency_ms: int = 0):
    """The stand-in's WSGI app for a server that keeps connections alive between requests, as the
    hosted APIs do (werkzeug's, behind ``main``, closes each one): the benches run
    ``gunicorn -k gthread --threads 64 'fakellm.__main__:wsgi(latency_ms=200)'`` (one process: the
    stand-in's counters live in it)."""
    return FakeLLM(latency_ms=latency_ms).app


if __name__ == "__main__":
    sys.exit(main())
