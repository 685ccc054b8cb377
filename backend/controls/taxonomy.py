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

Repair rules (each visible: counted, noted, logged and kept in the usage ledger):

* a path whose names differ from the tree only in case or spacing is read as the
  tree's path (``["science", "physics"]`` -> ``["Science", "Physics"]``; noted, not
  counted: nothing is guessed);
* a path that is not in the tree is **guessed** from its last name when that name
  identifies exactly one node: ``[["Physics"]]`` -> ``["Science", "Physics"]``, and
  ``[["Sport", "Optics"]]`` -> ``["Science", "Physics", "Optics"]`` when Optics is
  the only node of that name.  The guess is counted in ``stats["repaired"]`` and
  noted ("guessed as");
* otherwise the path is dropped and counted in ``stats["labels_dropped"]``; so is
  a non-leaf path when the tag says ``leafsOnly="true"``, and every path past
  ``maxUsages``.

Node names are the ``alias`` of a ``<Choice>`` when it has one, else its ``value``.
"""
from __future__ import annotations

from backend.controls.base import Control, allowed, bad, match_label, note, region, repaired
from core.labelconfig import ControlInfo, is_true

TAG = "Taxonomy"
OBJECTS = ("Text", "HyperText", "Image")
ENUM_LIMIT = 250


def prepare(info: ControlInfo) -> dict:
    if info.attr.get("apiUrl"):
        raise ValueError("it loads its tree from apiUrl, which is not known when the schema is built")
    tree = info.taxonomy  # read once by core.labelconfig
    if tree is None or not tree.paths:
        raise ValueError("it has no <Choice> children")
    cap = str(info.attr.get("maxUsages", "")).strip()
    return {"paths": list(tree.paths), "leaves": tree.leaves, "names": list(tree.names),
            "leafs_only": is_true(info.attr.get("leafsOnly")), "max_usages": int(cap) if cap.isdigit() else None}


def schema(control: Control) -> dict:
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
    leafs = " Only leaf nodes may be chosen." if control.extra["leafs_only"] else ""
    most = control.extra["max_usages"]
    cap = f" At most {most} paths." if most else ""
    return (
        f"classifies the {control.object_tag} {control.to_name!r} in a taxonomy: a list of paths, each a list of "
        f"node names from the root down to the chosen node (an empty list if none applies).{leafs}{cap} "
        f"The tree (one path per node): {_tree_text(control)}"
    )


def _resolve(control: Control, raw: list[str]) -> tuple[tuple[str, ...] | None, bool]:
    """(the tree path ``raw`` names, whether it was guessed from its last name); (None, False) if none."""
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
            return prefix, False
    # repair: the last name alone, if it names exactly one node
    hit = match_label(control.extra["names"], raw[-1])
    if hit is not None:
        candidates = [p for p in paths if p[-1] == hit]
        if len(candidates) == 1:
            return candidates[0], True
    return None, False


def _read_path(control: Control, item, stats) -> tuple[str, ...] | None:
    """The tree path one answered item names, after the repair rules; None (counted) when dropped."""
    if isinstance(item, str):
        item = [s.strip() for s in item.split("/")] if "/" in item else [item]
    if not isinstance(item, list) or not item or not all(isinstance(s, str) for s in item):
        raise bad(control, f"each path must be a non-empty list of node names, got {item!r}")
    path, guessed = _resolve(control, item)
    if path is None:
        stats["labels_dropped"] += 1
        nodes = allowed(control.extra["names"], 10)
        note(stats, f"{control.name}: dropped path not in the taxonomy {item!r}; nodes: {nodes}")
        return None
    if guessed:
        repaired(stats, f"{control.name}: path {item!r} is not in the taxonomy; guessed as {list(path)!r}")
    elif list(path) != item:
        note(stats, f"{control.name}: path {item!r} read as {list(path)!r}")
    if control.extra["leafs_only"] and path not in control.extra["leaves"]:
        stats["labels_dropped"] += 1
        note(stats, f"{control.name}: dropped non-leaf path {list(path)!r} (leafsOnly)")
        return None
    return path


def to_regions(control: Control, value, data, stats) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(control, f"expected a list of paths (lists of node names), got {type(value).__name__}")
    chosen: list[tuple[str, ...]] = []
    for item in value:
        path = _read_path(control, item, stats)
        if path is not None and path not in chosen:
            chosen.append(path)
    cap = control.extra["max_usages"]
    if cap and len(chosen) > cap:
        stats["labels_dropped"] += len(chosen) - cap
        note(stats, f"{control.name}: kept the first {cap} paths (maxUsages)")
        chosen = chosen[:cap]
    if not chosen:
        return []
    return [region(control, {"taxonomy": [list(p) for p in chosen]})]
