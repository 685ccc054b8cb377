"""What the live demo runs: Label Studio (a child process), the ML backend and the stand-in LLM (threads).

:class:`Stack` owns them all and stops them in reverse order (Label Studio by its process
group id, the threads by shutting their servers down); it is a context manager, so an
error or Ctrl-C anywhere stops everything it started and nothing else.

>>> [v.id for v in pick_versions(simulated=True, openai=False, anthropic=False)]
['reviews-gpt-4o-v1', 'reviews-gpt-4o-mini-v1']
>>> [v.model for v in pick_versions(simulated=False, openai=False, anthropic=True)]
['claude-sonnet-4-5', 'claude-haiku-4-5']
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml
from werkzeug.serving import BaseWSGIServer, make_server

from core.settings import Settings
from demo.lsserver import Admin, LabelStudioServer, start_server

# The demo's fixed admin of its own throw-away Label Studio on 127.0.0.1 (never a real account).
ADMIN = Admin(username="demo@example.com", password="demo-password-123",
              token="d3m0d3m0d3m0d3m0d3m0d3m0d3m0d3m0d3m0d3m0")
# The stand-in LLM's error rate per model: the cheaper model is measurably worse (as in the offline demo).
ERROR_RATES = {"gpt-4o": 0.03, "gpt-4o-mini": 0.25, "claude-sonnet-4-5": 0.03, "claude-haiku-4-5": 0.25}
INSTRUCTION = "You label customer reviews for a shop. Read the review and fill in every field.\n<text>{text}</text>\n"


@dataclass(frozen=True)
class DemoVersion:
    id: str
    provider: str
    model: str


VERSIONS = (
    DemoVersion("reviews-gpt-4o-v1", "openai", "gpt-4o"),
    DemoVersion("reviews-gpt-4o-mini-v1", "openai", "gpt-4o-mini"),
    DemoVersion("reviews-claude-sonnet-v1", "anthropic", "claude-sonnet-4-5"),
    DemoVersion("reviews-claude-haiku-v1", "anthropic", "claude-haiku-4-5"),
)


def pick_versions(simulated: bool, openai: bool, anthropic: bool) -> list[DemoVersion]:
    """The two versions the demo compares: a strong and a cheap model of a provider it can call."""
    usable = [v for v in VERSIONS if simulated or (v.provider == "openai" and openai)
              or (v.provider == "anthropic" and anthropic)]
    return usable[:2]


def write_prompts(path: Path, versions: list[DemoVersion]) -> None:
    """The prompts file of the demo's versions (the same text every run: versions are immutable)."""
    doc = {"default": versions[0].id, "versions": [
        {"id": v.id, "provider": v.provider, "model": v.model, "instruction": INSTRUCTION,
         "params": {"max_tokens": 1024} if v.provider == "anthropic" else {"temperature": 0, "max_tokens": 1024}}
        for v in versions]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def serve(app, port: int) -> BaseWSGIServer:
    """Serve a WSGI app on 127.0.0.1:``port`` in a daemon thread (a free port when it is 0 or taken)."""
    try:
        server = make_server("127.0.0.1", port, app, threaded=True)
    except OSError:
        server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, name=f"demo-backend:{server.server_port}", daemon=True).start()
    return server


class Stack(contextlib.ExitStack):
    """Everything the demo started; closing it stops them (Label Studio last started, first stopped)."""

    label_studio: LabelStudioServer

    def start_label_studio(self, data_dir: Path, port: int | None, binary: str) -> LabelStudioServer:
        server = start_server(data_dir, binary, admin=ADMIN, port=port or None)
        self.callback(server.stop)
        self.label_studio = server
        return server

    def start_backend(self, settings: Settings, port: int) -> str:
        from backend.app import create_app
        from backend.ledger import open_ledger
        from backend.versions import load_versions

        app = create_app(settings, load_versions(settings.prompts_file), ledger=open_ledger(settings))
        server = serve(app, port)
        self.callback(server.server_close)
        self.callback(server.shutdown)
        return f"http://127.0.0.1:{server.server_port}"

    def start_fake_llm(self, tasks: list[dict]):
        """The stand-in LLM answering from the dataset's ground truth, worsened per model."""
        from backend.schema import plan_for
        from fakellm import FakeLLM, TableAnswer
        from fakellm.dataset import LABEL_CONFIG
        from fakellm.oracle import answer_from_regions

        plan = plan_for(LABEL_CONFIG)
        table = {t["data"]["text"]: answer_from_regions(t["annotations"][0]["result"], plan, t["data"]["text"])
                 for t in tasks}
        return self.enter_context(FakeLLM(TableAnswer(table, error_rates=ERROR_RATES, seed=1)))

