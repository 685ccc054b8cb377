"""Taxonomy: pick one or more nodes of a tree of choices; each pick is a path from the root.

Schema: ``{"type": "array", "items": {"type": "array", "items": {"type": "string", "enum": [node names]}}}``
(the enum is left out for trees of more than 250 distinct names, to stay within
the providers' enum limits; paths are checked here either way).  An empty list
means "none applies".

Example::

    <Taxonomy name="topic" toName="text">
      <Choice value="Science"><Choice value="Physics"/><Choice value="Biology"/></Choice>
      <Choice value="Sport"/>
    </Taxonomy>
    answer [["Science", "Physics"]]  ->  [{"type": "taxonomy", "value": {"taxonomy": [["Science", "Physics"]]}, ...}]

A path that is not in the tree is repaired when its last name identifies exactly
one node (``[["Physics"]]`` -> ``["Science", "Physics"]``, noted), otherwise it is
dropped and counted in ``stats["labels_dropped"]``; so is a non-leaf path when
the tag says ``leafsOnly="true"``.  ``maxUsages`` caps the number of paths.
Node names are the ``alias`` of a ``<Choice>`` when it has one, else its ``value``.
"""
from __future__ import annotations

from backend.controls.base import Control, PlanContext, allowed, bad, match_label, note, region

TAG = "Taxonomy"
OBJECTS = ("Text", "HyperText", "Image")
ENUM_LIMIT = 250


def _element(ctx: PlanContext, name: str):
    for el in ctx.interface._tree.iter():  # the parsed config (backend.schema reads it the same way)
        if isinstance(el.tag, str) and el.tag.lower() == "taxonomy" and el.get("name") == name:
            return el
    return None


def _children(el) -> list[tuple[str, object]]:
    """(name, element) of the direct <Choice> descendants of ``el`` (through any <View> wrappers)."""
    out, seen = [], set()
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tag == "Choice":
            key = child.get("alias") or child.get("value")
            if key is not None and key not in seen:
                seen.add(key)
                out.append((key, child))
        else:
            for key, sub in _children(child):
                if key not in seen:
                    seen.add(key)
                    out.append((key, sub))
    return out


def prepare(sdk_control, ctx: PlanContext) -> dict:
    if sdk_control.attr.get("apiUrl"):
        raise ValueError("it loads its tree from apiUrl, which is not known when the schema is built")
    el = _element(ctx, sdk_control.name)
    paths: list[tuple[str, ...]] = []
    leaves: set[tuple[str, ...]] = set()

    def walk(node, prefix):
        for key, child in _children(node):
            path = prefix + (key,)
            paths.append(path)
            if not _children(child):
                leaves.add(path)
            walk(child, path)

    if el is not None:
        walk(el, ())
    if not paths:
        raise ValueError("it has no <Choice> children")
    names = list(dict.fromkeys(p[-1] for p in paths))
    return {"paths": paths, "leaves": leaves, "names": names}


def schema(control: Control, ctx: PlanContext) -> dict:
    names = control.extra["names"]
    step = {"type": "string"}
    if len(names) <= ENUM_LIMIT:
        step["enum"] = names
    return {"type": "array", "items": {"type": "array", "items": step}, "description": describe(control)}


def _tree_text(control: Control, limit: int = 200) -> str:
    paths = control.extra["paths"]
    shown = [" / ".join(p) for p in paths[:limit]]
    more = f"; ... ({len(paths)} nodes in all)" if len(paths) > limit else ""
    return "; ".join(shown) + more


def describe(control: Control) -> str:
    leafs = " Only leaf nodes may be chosen." if control.attr.get("leafsOnly") == "true" else ""
    cap = control.attr.get("maxUsages")
    cap = f" At most {cap} paths." if cap else ""
    return (
        f"classifies the {control.object_tag} {control.to_name!r} in a taxonomy: a list of paths, each a list of "
        f"node names from the root down to the chosen node (an empty list if none applies).{leafs}{cap} "
        f"The tree (one path per node): {_tree_text(control)}"
    )


def _resolve(control: Control, raw: list[str]) -> tuple[str, ...] | None:
    paths = control.extra["paths"]
    known = set(paths)
    # walk down from the root, matching each step among the children of the previous one
    prefix: tuple[str, ...] = ()
    for step in raw:
        children = [p[-1] for p in paths if len(p) == len(prefix) + 1 and p[: len(prefix)] == prefix]
        hit = match_label(children, step)
        if hit is None:
            break
        prefix = prefix + (hit,)
    else:
        if prefix in known:
            return prefix
    # repair: the last name alone, if it names exactly one node
    hit = match_label(control.extra["names"], raw[-1])
    if hit is not None:
        candidates = [p for p in paths if p[-1] == hit]
        if len(candidates) == 1:
            return candidates[0]
    return None


def to_regions(control: Control, value, data, stats) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(control, f"expected a list of paths (lists of node names), got {type(value).__name__}")
    chosen: list[tuple[str, ...]] = []
    for item in value:
        if isinstance(item, str):
            item = [s.strip() for s in item.split("/")] if "/" in item else [item]
        if not isinstance(item, list) or not item or not all(isinstance(s, str) for s in item):
            raise bad(control, f"each path must be a non-empty list of node names, got {item!r}")
        path = _resolve(control, item)
        if path is None:
            stats["labels_dropped"] += 1
            note(stats, f"{control.name}: dropped path not in the taxonomy {item!r}; nodes: {allowed(control.extra['names'], 10)}")
            continue
        if list(path) != item:
            note(stats, f"{control.name}: path {item!r} read as {list(path)!r}")
        if control.attr.get("leafsOnly") == "true" and path not in control.extra["leaves"]:
            stats["labels_dropped"] += 1
            note(stats, f"{control.name}: dropped non-leaf path {list(path)!r} (leafsOnly)")
            continue
        if path not in chosen:
            chosen.append(path)
    cap = control.attr.get("maxUsages")
    if cap and str(cap).isdigit() and len(chosen) > int(cap):
        stats["labels_dropped"] += len(chosen) - int(cap)
        note(stats, f"{control.name}: kept the first {cap} paths (maxUsages)")
        chosen = chosen[: int(cap)]
    if not chosen:
        return []
    return [region(control, {"taxonomy": [list(p) for p in chosen]})]
