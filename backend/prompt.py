"""Build the messages for one task: a system prompt and the user message parts.

* System prompt: ``plan.instructions`` (how to answer each control) followed by
  "Answer only with JSON matching the schema."
* User message: the version's ``instruction`` template filled in with the
  task data (``str.format`` syntax: ``{text}``, ``{meta.title}``,
  ``{items[0]}``).  String values are inserted verbatim; other values as JSON.
  An image field becomes the marker ``[image: <field>]`` in the text and an
  :class:`~backend.providers.base.ImagePart` appended after it, resolved by a
  :class:`~backend.media.MediaResolver`.  Every Text/HyperText/Image object
  of the label config whose field the instruction does not use is appended
  (``<field>:`` then the text, or the image marker), so the model always sees
  what it must label and quote.

Example::

    >>> from types import SimpleNamespace
    >>> from backend.schema import plan_for
    >>> plan = plan_for('<View><Text name="t" value="$text"/><Choices name="s" toName="t">'
    ...                 '<Choice value="Pos"/><Choice value="Neg"/></Choices></View>')
    >>> version = SimpleNamespace(instruction="Classify the review.", fields=[])
    >>> system, parts = render(version, plan, {"data": {"text": "Great!"}}, media=None)
    >>> parts[0].text
    'Classify the review.\\n\\ntext:\\nGreat!'
"""
from __future__ import annotations

import json
import string
from typing import Any, Mapping

from backend.controls.base import lookup
from backend.providers.base import ImagePart, TextPart
from core.errors import MissingDataError

ANSWER_RULE = "Answer only with JSON matching the schema."


def system_prompt(plan) -> str:
    """``plan.instructions`` plus the rule to answer with JSON only."""
    return f"{plan.instructions}\n\n{ANSWER_RULE}"


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _Filler(string.Formatter):
    """Fills ``{field}`` from task data; image fields become markers and are collected."""

    def __init__(self, data: Mapping, image_fields: set[str], on_image):
        super().__init__()
        self.data = data
        self.image_fields = image_fields
        self.on_image = on_image

    def _missing(self, name: str) -> MissingDataError:
        have = ", ".join(sorted(map(str, self.data))) or "(none)"
        return MissingDataError(
            f"the prompt instruction uses {{{name}}} but the task data has no field {name!r}; "
            f"the task has: {have}"
        )

    def get_field(self, field_name, args, kwargs):
        # whole name first (keys may contain dots), then dotted/indexed access
        if field_name in self.data:
            return self._value(field_name, self.data[field_name]), field_name
        root = field_name.split(".")[0].split("[")[0]
        if root not in self.data:
            raise self._missing(root)
        if "[" not in field_name:
            try:
                return lookup(self.data, field_name), field_name
            except KeyError:
                raise self._missing(field_name) from None
        try:
            return super().get_field(field_name, args, dict(self.data))
        except (KeyError, IndexError, AttributeError, TypeError):
            raise self._missing(field_name) from None

    def _value(self, name: str, value):
        if name in self.image_fields:
            self.on_image(name, value)
            return f"[image: {name}]"
        return value

    def format_field(self, value, format_spec):
        if not format_spec and not isinstance(value, str):
            return _as_text(value)
        return super().format_field(value, format_spec)

    def check_unused_args(self, used_args, args, kwargs):
        return None


def render(version, plan, task: Mapping, media, *, deadline: float | None = None) -> tuple[str, list]:
    """``(system prompt, [TextPart, ImagePart...])`` for one task (see the module docstring).

    ``deadline`` (a ``time.monotonic()`` instant, the request's deadline) is
    handed to ``media.resolve``: image fetches end by then.

    Raises :class:`~core.errors.MissingDataError` when the instruction or an
    object of the label config needs a field the task lacks (the message names
    the field and the fields the task has), and
    :class:`~core.errors.MediaError` when an image cannot be resolved.
    """
    data = task.get("data") if isinstance(task, Mapping) else None
    if not isinstance(data, Mapping):
        raise MissingDataError("the task has no `data` object; import tasks as {\"data\": {...}}")
    images: list[ImagePart] = []
    resolved: dict[str, ImagePart] = {}

    def on_image(name: str, value) -> None:
        if name not in resolved:
            resolved[name] = media.resolve(value, deadline=deadline)
            images.append(resolved[name])

    image_fields = set(plan.image_fields)
    filler = _Filler(data, image_fields, on_image)
    text = filler.format(version.instruction)

    used = set(version.fields)
    appended: list[str] = []
    for obj in plan.objects:
        if not obj.field or obj.field in used:
            continue
        used.add(obj.field)
        try:
            value = lookup(data, obj.field)
        except KeyError:
            have = ", ".join(sorted(map(str, data))) or "(none)"
            raise MissingDataError(
                f"the label config's {obj.tag} {obj.name!r} reads task field {obj.field!r}, which this task "
                f"lacks; the task has: {have}"
            ) from None
        if obj.tag == "Image":
            on_image(obj.field, value)
            appended.append(f"[image: {obj.field}]")
        else:
            appended.append(f"{obj.field}:\n{_as_text(value)}")
    if appended:
        text = text.rstrip("\n") + "\n\n" + "\n\n".join(appended)
    return system_prompt(plan), [TextPart(text), *images]
