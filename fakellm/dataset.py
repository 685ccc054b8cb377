"""A small, deterministic review-labelling dataset with ground truth, for the offline demo.

Each task is a customer review with three labels a human gave it: the
sentiment (Choices), the organisations, products and places it names (Labels
spans over the text) and a one-line summary (TextArea).  The texts are
generated from templates so the demo needs no download and every span offset
is exact.
"""
from __future__ import annotations

import random

LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single" showInline="true">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
  </Choices>
  <Labels name="entities" toName="text">
    <Label value="ORG"/>
    <Label value="PRODUCT"/>
    <Label value="LOC"/>
  </Labels>
  <TextArea name="summary" toName="text" maxSubmissions="1" editable="true"/>
</View>"""

ORGS = ["Acme", "Globex", "Initech", "Umbrella Corp", "Stark Industries", "Wayne Enterprises", "Hooli", "Soylent"]
PRODUCTS = ["kettle", "headphones", "vacuum cleaner", "laptop stand", "coffee grinder", "desk lamp", "backpack",
            "blender"]
PLACES = ["Berlin", "Lisbon", "Toronto", "Osaka", "Nairobi", "Lyon", "Austin", "Krakow"]
TEMPLATES = {
    "Positive": [
        ("I bought the {product} from {org} in {loc} and it works beautifully.", "{product} from {org} works well"),
        ("Great {product}! {org} shipped it to {loc} in two days.", "fast delivery, great {product}"),
        ("The {org} {product} is the best purchase I made this year.", "best purchase of the year"),
    ],
    "Negative": [
        ("The {product} from {org} broke after a week, avoid it.", "{product} broke after a week"),
        ("{org} never delivered my {product} to {loc}. Terrible service.", "{product} never delivered"),
        ("Cheap plastic {product}; {org} refused a refund.", "poor quality, refund refused"),
    ],
    "Neutral": [
        ("The {product} from {org} arrived in {loc}. It does what it says.", "{product} does what it says"),
        ("Ordered a {product} from {org}; average quality for the price.", "average {product}"),
    ],
}


def _span(text: str, value: str, label: str) -> dict:
    start = text.index(value)
    return {"start": start, "end": start + len(value), "text": value, "labels": [label]}


def make_tasks(n: int = 60, seed: int = 7) -> list[dict]:
    """``n`` tasks as Label Studio import dicts: ``{"id", "data": {"text"}, "annotations": [ground truth]}``."""
    rng = random.Random(seed)
    tasks = []
    sentiments = list(TEMPLATES)
    for i in range(n):
        sentiment = sentiments[i % len(sentiments)]
        template, summary = rng.choice(TEMPLATES[sentiment])
        org, product, loc = rng.choice(ORGS), rng.choice(PRODUCTS), rng.choice(PLACES)
        text = template.format(org=org, product=product, loc=loc)
        spans = [_span(text, org, "ORG"), _span(text, product, "PRODUCT")]
        if "{loc}" in template:
            spans.append(_span(text, loc, "LOC"))
        result = [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [sentiment]}},
            *[
                {"id": f"t{i}s{j}", "from_name": "entities", "to_name": "text", "type": "labels", "value": s}
                for j, s in enumerate(sorted(spans, key=lambda s: s["start"]))
            ],
            {"from_name": "summary", "to_name": "text", "type": "textarea",
             "value": {"text": [summary.format(org=org, product=product)]}},
        ]
        tasks.append({"id": i + 1, "data": {"text": text}, "annotations": [{"result": result, "ground_truth": True}]})
    return tasks
