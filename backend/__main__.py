"""``python -m backend --host 127.0.0.1 --port 9090``: serve the ML backend (development server).

For production use gunicorn with the WSGI object ``backend.wsgi:app``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from core.errors import Error
from core.secrets import install_log_filter
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backend", description="Label Studio ML backend serving LLM prompt versions."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9090, help="port (default 9090)")
    parser.add_argument("--prompts", help="versions file (default: PROMPTS_FILE or prompts.yaml)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.prompts:
            settings = settings.replace(prompts_file=args.prompts)
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        install_log_filter(settings)
        from backend.app import create_app

        app = create_app(settings)
    except Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    versions = app.config["VERSIONS"]
    print(f"serving {len(versions)} prompt version(s), default {versions.default!r}, "
          f"on http://{args.host}:{args.port}", flush=True)
    for vid, why in app.config["ROUTES"].blocked_versions().items():
        print(f"warning: version {vid!r} cannot run: {why}", file=sys.stderr, flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
