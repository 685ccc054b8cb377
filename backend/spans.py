"""Find the character offsets of a quoted passage in a source text.

Models are bad at counting characters, so the output schema never asks them
for offsets: it asks for the *quoted text* (plus an optional occurrence
number), and :func:`find_spans` locates it in the source.  Offsets are Python
string indices, i.e. Unicode code points, which is also what Label Studio's
``<Text>`` and ``<HyperText>`` tags count (an emoji is one position, a
combining accent is its own position).

Matching, in order:

1. exact substring match;
2. if that finds nothing, a *normalised* match: both sides are compared after
   Unicode compatibility decomposition (NFKD, so "é" matches "e"+U+0301 and a
   no-break space matches a space), case folding, typographic quotes and dashes
   mapped to their ASCII forms, and every run of whitespace collapsed to one
   space.  The match is mapped back to the original indices, so the returned
   span covers the source text exactly as it is (original case, original line
   breaks), and it never ends between a letter and its combining marks.

Repeated passages: ``occurrence`` (1-based, in reading order) picks one match
(counted among the exact matches, or among the normalised ones when there are
fewer exact matches than that);
``None`` or ``0`` returns *every* occurrence (for entity labelling the same
name usually deserves the same label everywhere).  An ``occurrence`` past the
number of matches returns ``[]``: the model pointed at something that is not
there, and spans are never invented.  Matches never overlap.
"""
from __future__ import annotations

import functools
import html as _html
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["SpanFinder", "find_spans", "find_html_spans", "html_text", "normalise"]

_PUNCT = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    }
)


@functools.lru_cache(maxsize=8192)
def _norm_char(ch: str) -> str:
    return unicodedata.normalize("NFKD", ch).translate(_PUNCT).casefold()


def normalise(text: str) -> tuple[str, list[int]]:
    """Normalised form of ``text`` and, for each of its characters, the index in ``text`` it came from.

    Example: ``normalise("A  B")`` -> ``("a b", [0, 1, 3])``.
    """
    out: list[str] = []
    src: list[int] = []
    in_space = False
    for i, ch in enumerate(text):
        piece = _norm_char(ch)
        if not piece:
            continue
        if piece.isspace():
            if not in_space:
                out.append(" ")
                src.append(i)
            in_space = True
            continue
        in_space = False
        for p in piece:
            if p.isspace():  # a compatibility form that contains a space
                out.append(" ")
            else:
                out.append(p)
            src.append(i)
    return "".join(out), src


def _all_exact(text: str, quote: str) -> list[tuple[int, int]]:
    spans = []
    start = text.find(quote)
    while start != -1:
        spans.append((start, start + len(quote)))
        start = text.find(quote, start + len(quote))
    return spans


def _extend_over_marks(text: str, end: int) -> int:
    while end < len(text) and unicodedata.combining(text[end]):
        end += 1
    return end


class SpanFinder:
    """:func:`find_spans` for many quotes in one text: the normalised text is built once.

    Example: ``SpanFinder("Anna met Bob").find("bob")`` -> ``[(9, 12)]``.
    """

    def __init__(self, text: str):
        self.text = text if isinstance(text, str) else ""
        self._norm: tuple[str, list[int]] | None = None

    def _all_normalised(self, quote: str) -> list[tuple[int, int]]:
        nquote, _ = normalise(quote)
        nquote = nquote.strip()
        if not nquote:
            return []
        if self._norm is None:
            self._norm = normalise(self.text)
        ntext, src = self._norm
        spans: list[tuple[int, int]] = []
        for a, b in _all_exact(ntext, nquote):
            start = src[a]
            end = _extend_over_marks(self.text, src[b - 1] + 1)
            if spans and start < spans[-1][1]:
                continue  # two normalised matches inside one original character
            spans.append((start, end))
        return spans

    def find(self, quote: str, occurrence: int | None = None) -> list[tuple[int, int]]:
        """See :func:`find_spans`."""
        if not isinstance(quote, str):
            return []
        bad_occurrence = not isinstance(occurrence, int) or isinstance(occurrence, bool) or occurrence < 0
        if occurrence is not None and bad_occurrence:
            return []
        stripped = quote.strip()
        if not stripped:
            return []
        spans = _all_exact(self.text, stripped)
        if not spans or (occurrence and occurrence > len(spans)):
            spans = self._all_normalised(stripped) or spans
        if not occurrence:
            return spans
        return [spans[occurrence - 1]] if occurrence <= len(spans) else []


def find_spans(text: str, quote: str, occurrence: int | None = None) -> list[tuple[int, int]]:
    """Offsets ``(start, end)`` of ``quote`` in ``text`` (``text[start:end]`` is the passage).

    Exact match first, then a whitespace/case/Unicode-normalised match (see the
    module docstring).  ``occurrence`` (1-based) selects one of several matches;
    ``None``/``0`` returns all of them; a passage that cannot be found, or an
    occurrence past the last match, gives ``[]``.  For many quotes in one text
    use :class:`SpanFinder`.

    Example::

        >>> text = "Anna met Bob. Later, anna left."
        >>> find_spans(text, "Anna")
        [(0, 4)]
        >>> find_spans(text, "ANNA")             # normalised: both occurrences
        [(0, 4), (21, 25)]
        >>> find_spans(text, "anna", occurrence=2)
        [(21, 25)]
        >>> find_spans("Café 🎉 ok", "🎉 OK")
        [(5, 9)]
        >>> find_spans(text, "Carol")
        []
    """
    if not isinstance(text, str):
        return []
    return SpanFinder(text).find(quote, occurrence)


# --------------------------------------------------------------------------
# HyperText: the text a browser shows, and Label Studio's xpath offsets
# --------------------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
_DOC_WRAPPERS = {"html", "head", "body"}


@dataclass
class _Node:
    path: str
    start: int  # global offset of its first character
    end: int


@dataclass
class HtmlText:
    """The text of an HTML document as Label Studio's ``<HyperText>`` counts it.

    ``text`` is every DOM text node in document order with one ``"\\n"`` per
    ``<br>`` (entities decoded), so an index into ``text`` *is* a Label Studio
    ``globalOffsets`` value.  ``nodes`` are the text nodes with their xpath
    relative to the content root (``/p[1]/b[1]/text()[1]``), the form the
    editor writes in ``value.start`` / ``value.end``.
    """

    text: str
    nodes: list[_Node] = field(default_factory=list)
    finder: "SpanFinder | None" = field(default=None, repr=False)

    def find(self, quote: str, occurrence: int | None = None) -> list[tuple[int, int]]:
        """:func:`find_spans` over the shown text; a quote still carrying entities (``&amp;``) is retried decoded."""
        if self.finder is None:
            self.finder = SpanFinder(self.text)
        spans = self.finder.find(quote, occurrence)
        if not spans and isinstance(quote, str) and "&" in quote:
            spans = self.finder.find(_html.unescape(quote), occurrence)
        return spans

    def xpath_range(self, start: int, end: int) -> dict | None:
        """The HyperText region value for ``text[start:end]``.

        Example: for ``<p>The <b>HTML</b></p>`` and the span (4, 8) ("HTML"):
        ``{"start": "/p[1]/b[1]/text()[1]", "startOffset": 0,
        "end": "/p[1]/b[1]/text()[1]", "endOffset": 4,
        "globalOffsets": {"start": 4, "end": 8}}``.
        ``None`` if a boundary does not fall inside a text node.
        """
        first = next((n for n in self.nodes if n.start <= start < n.end), None)
        last = next((n for n in self.nodes if n.start < end <= n.end), None)
        if first is None or last is None or end <= start:
            return None
        return {
            "start": first.path,
            "startOffset": start - first.start,
            "end": last.path,
            "endOffset": end - last.start,
            "globalOffsets": {"start": start, "end": end},
        }


class _Indexer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # each open element: [segment, counters of its children's names]
        self.stack: list[list] = [["", {}]]
        self.parts: list[str] = []
        self.pos = 0
        self.nodes: list[_Node] = []
        self.open_text: _Node | None = None  # a text node still being extended
        self.has_body = False
        self.in_body = True
        self.skip = 0  # depth inside <head> (not shown)
        self.drop_newline = False  # browsers drop a newline right after <pre>/<textarea>/<listing>

    def _child_segment(self, name: str) -> str:
        counters = self.stack[-1][1]
        counters[name] = counters.get(name, 0) + 1
        return f"{name}[{counters[name]}]"

    def _path(self, last: str) -> str:
        return "/".join(seg for seg, _ in self.stack) + "/" + last

    def handle_starttag(self, tag, attrs):
        tag = tag.lower()
        if tag in _DOC_WRAPPERS:
            if tag == "head":
                self.skip += 1
            elif tag == "body" and not self.has_body:
                # content before <body> (doctype, head) is not part of the root
                self.has_body = True
                self._reset_root()
            return
        if self.skip:
            return
        self.open_text = None
        self.drop_newline = False
        if tag == "tr" and self.stack[-1][0].startswith("table["):
            self.stack.append([self._child_segment("tbody"), {}])  # browsers insert it
        if tag == "br":
            self._child_segment("br")
            self.parts.append("\n")
            self.pos += 1
            return
        seg = self._child_segment(tag)
        if tag not in _VOID:
            self.stack.append([seg, {}])
        self.drop_newline = tag in ("pre", "textarea", "listing")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        tag = tag.lower()
        if tag not in _VOID and tag not in _DOC_WRAPPERS and not self.skip:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        tag = tag.lower()
        if tag in _DOC_WRAPPERS:
            if tag == "head" and self.skip:
                self.skip -= 1
            return
        if self.skip or tag in _VOID:
            return
        self.open_text = None
        self.drop_newline = False
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i][0].startswith(tag + "["):
                del self.stack[i:]
                break
        else:
            return
        # an implicit <tbody> closes with its table
        if tag == "table" and self.stack and self.stack[-1][0].startswith("tbody["):
            self.stack.pop()

    def handle_data(self, data):
        if self.drop_newline and self.open_text is None and data.startswith("\n"):
            data = data[1:]
        self.drop_newline = False
        if self.skip or not data:
            return
        n = len(data)
        if self.open_text is not None:
            self.open_text.end += n
        else:
            self.open_text = _Node(self._path(self._child_segment("text()")), self.pos, self.pos + n)
            self.nodes.append(self.open_text)
        self.parts.append(data)
        self.pos += n

    def handle_comment(self, data):
        if not self.skip:
            self.open_text = None
            self._child_segment("#comment")

    def _reset_root(self):
        self.stack = [["", {}]]
        self.parts, self.pos, self.nodes, self.open_text = [], 0, [], None


def html_text(markup: str) -> HtmlText:
    """Index ``markup`` the way Label Studio's HyperText editor does (see :class:`HtmlText`).

    Like a browser, CRLF becomes LF and a newline right after ``<pre>`` is
    dropped.  Limits: this is not a full HTML5 tree builder.  Well-formed markup maps
    exactly; implied end tags (``<p>a<p>b``) and foster-parented table content
    can shift the xpaths, in which case the editor falls back on the
    ``globalOffsets`` that are always written alongside.

    Example::

        >>> h = html_text("<p>The <b>HTML</b><br/>ok</p>")
        >>> h.text
        'The HTML\\nok'
        >>> h.xpath_range(4, 8)["start"]
        '/p[1]/b[1]/text()[1]'
    """
    parser = _Indexer()
    # a browser's input stream turns CRLF and lone CR into LF before parsing
    parser.feed(markup.replace("\r\n", "\n").replace("\r", "\n"))
    parser.close()
    return HtmlText(text="".join(parser.parts), nodes=parser.nodes)


def find_html_spans(index: HtmlText, quote: str, occurrence: int | None = None) -> list[tuple[int, int]]:
    """:func:`find_spans` over the shown text of an HTML document; a quote that
    still carries entities (``&amp;``) is retried decoded."""
    return index.find(quote, occurrence)
