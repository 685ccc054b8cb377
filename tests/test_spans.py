"""Span offset finding: quoted text -> (start, end) in the source, and HyperText xpaths."""
from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.spans import find_html_spans, find_spans, html_text, normalise


def spans_text(text, spans):
    return [text[a:b] for a, b in spans]


# --- exact matches and repeats ------------------------------------------------

def test_exact_single():
    assert find_spans("Anna met Bob in Paris.", "Bob") == [(9, 12)]


def test_repeated_substring_every_occurrence_by_default():
    text = "Bob called. Then Bob left. Bob!"
    assert find_spans(text, "Bob") == [(0, 3), (17, 20), (27, 30)]
    assert find_spans(text, "Bob", occurrence=0) == find_spans(text, "Bob")


def test_repeated_substring_picks_the_indicated_occurrence():
    text = "Bob called. Then Bob left. Bob!"
    assert find_spans(text, "Bob", occurrence=1) == [(0, 3)]
    assert find_spans(text, "Bob", occurrence=3) == [(27, 30)]


def test_occurrence_past_the_last_match_finds_nothing():
    assert find_spans("Bob and Bob", "Bob", occurrence=3) == []


def test_matches_do_not_overlap():
    assert find_spans("aaaa", "aa") == [(0, 2), (2, 4)]


def test_occurrence_counts_normalised_matches_when_exact_ones_run_out():
    text = "Anna met Bob. Later, anna left."
    assert find_spans(text, "anna") == [(21, 25)]  # exact wins
    assert find_spans(text, "anna", occurrence=2) == [(21, 25)]
    assert find_spans(text, "anna", occurrence=1) == [(21, 25)]
    assert find_spans(text, "ANNA", occurrence=1) == [(0, 4)]


# --- not found ------------------------------------------------------------------

def test_not_found():
    assert find_spans("Anna met Bob.", "Carol") == []


def test_empty_or_blank_quote_finds_nothing():
    assert find_spans("Anna met Bob.", "") == []
    assert find_spans("Anna met Bob.", "   \n") == []


def test_bad_arguments_find_nothing():
    assert find_spans(None, "x") == []
    assert find_spans("x", None) == []
    assert find_spans("x x", "x", occurrence=-1) == []
    assert find_spans("x x", "x", occurrence=True) == []


def test_a_paraphrase_is_not_matched():
    assert find_spans("The quick brown fox", "quick red fox") == []


# --- normalisation ----------------------------------------------------------------

def test_whitespace_normalised_and_mapped_back():
    text = "New\n  York   City is big"
    (span,) = find_spans(text, "New York City")
    assert span == (0, 17)
    assert text[span[0]:span[1]] == "New\n  York   City"


def test_case_normalised_keeps_original_text():
    text = "The EUROPEAN Union"
    (span,) = find_spans(text, "european union")
    assert text[span[0]:span[1]] == "EUROPEAN Union"


def test_surrounding_whitespace_in_quote_ignored():
    assert find_spans("say hello there", "  hello \n") == [(4, 9)]


def test_typographic_quotes_and_dashes():
    text = "He said “hi” — then left"
    (span,) = find_spans(text, 'said "hi" - then')
    assert text[span[0]:span[1]] == "said “hi” — then"


def test_no_break_space_matches_space():
    text = "100\u00a0km away"
    assert spans_text(text, find_spans(text, "100 km")) == ["100\u00a0km"]


def test_normalise_maps_back_to_sources():
    assert normalise("A  B") == ("a b", [0, 1, 3])


# --- unicode --------------------------------------------------------------------

def test_emoji_offsets_are_code_points():
    text = "I ❤️ 🐱 cats"
    (span,) = find_spans(text, "cats")
    assert span == (len("I ❤️ 🐱 "), len(text))
    assert text[span[0]:span[1]] == "cats"
    (cat,) = find_spans(text, "🐱")
    assert cat == (5, 6)


def test_emoji_sequences_and_flags():
    text = "Team 👨‍👩‍👧 from 🇫🇷 won"
    assert spans_text(text, find_spans(text, "👨‍👩‍👧 from 🇫🇷")) == ["👨‍👩‍👧 from 🇫🇷"]


def test_combining_marks_match_precomposed_and_keep_marks():
    decomposed = "cafe\u0301 au lait"  # e + COMBINING ACUTE
    (span,) = find_spans(decomposed, "Café")
    assert span == (0, 5)
    assert decomposed[span[0]:span[1]] == "cafe\u0301"
    precomposed = "un café noir"
    assert spans_text(precomposed, find_spans(precomposed, "cafe\u0301")) == ["café"]


def test_span_never_ends_before_a_combining_mark():
    text = "cafe\u0301!"
    (span,) = find_spans(text, "CAFE")  # normalised match on the base letters
    assert text[span[0]:span[1]] == "cafe\u0301"


def test_cjk_repeats():
    text = "東京タワーと東京駅"
    assert find_spans(text, "東京") == [(0, 2), (6, 8)]
    assert find_spans(text, "東京駅") == [(6, 9)]
    assert find_spans(text, "東京", occurrence=2) == [(6, 8)]


def test_fullwidth_matches_ascii_after_compatibility_normalisation():
    text = "Ｔｏｋｙｏ ２０２０"
    assert spans_text(text, find_spans(text, "Tokyo 2020")) == ["Ｔｏｋｙｏ ２０２０"]


def test_case_folding_that_changes_length():
    text = "Die Straße ist lang"
    assert spans_text(text, find_spans(text, "STRASSE")) == ["Straße"]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60),
    st.data(),
)
def test_any_exact_substring_is_found_at_a_matching_place(text, data):
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    quote = text[start:end]
    if not quote.strip():
        return
    spans = find_spans(text, quote)
    assert spans, (text, quote)
    stripped = quote.strip()
    for a, b in spans:
        assert text[a:b] == stripped
    assert any(a <= start + quote.index(stripped) < b for a, b in spans) or text.count(stripped) > 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_letters, min_size=1, max_size=6), min_size=1, max_size=8), st.data())
def test_whitespace_and_case_variants_map_back_to_the_same_words(words, data):
    seps = [data.draw(st.sampled_from([" ", "  ", "\n", "\t ", " \n "])) for _ in words]
    text = "".join(w + s for w, s in zip(words, seps, strict=True)).rstrip()
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(i + 1, len(words)))
    quote = " ".join(words[i:j]).swapcase()
    spans = find_spans(text, quote)
    assert spans
    for a, b in spans:
        assert " ".join(text[a:b].split()).casefold() == quote.casefold()


# --- HyperText ------------------------------------------------------------------

def test_html_text_nodes_paths_and_offsets_follow_label_studio():
    # the example of Label Studio's DomManager: text()[2] starts at 13 because <br> counts one
    html = '<p>This\nis part<br/> of \n<abbr title="HyperText"><b>HTML</b></abbr>\n</p>'
    index = html_text(html)
    assert index.text == "This\nis part\n of \nHTML\n"
    assert [(n.path, n.start, n.end) for n in index.nodes] == [
        ("/p[1]/text()[1]", 0, 12),
        ("/p[1]/text()[2]", 13, 18),
        ("/p[1]/abbr[1]/b[1]/text()[1]", 18, 22),
        ("/p[1]/text()[3]", 22, 23),
    ]


def test_html_span_across_tags():
    index = html_text("<div><p>The <b>HTML</b> spec</p></div>")
    (span,) = find_html_spans(index, "The HTML spec")
    value = index.xpath_range(*span)
    assert value == {
        "start": "/div[1]/p[1]/text()[1]",
        "startOffset": 0,
        "end": "/div[1]/p[1]/text()[2]",
        "endOffset": 5,
        "globalOffsets": {"start": 0, "end": 13},
    }


def test_html_entities_decoded_and_quote_with_entities_retried():
    index = html_text("<p>Tom &amp; Jerry &lt;3</p>")
    assert index.text == "Tom & Jerry <3"
    assert find_html_spans(index, "Tom & Jerry") == [(0, 11)]
    assert find_html_spans(index, "Tom &amp; Jerry") == [(0, 11)]


def test_html_sibling_counters_and_comments():
    index = html_text("<ul><li>one</li><li>two<!-- c -->three</li></ul>")
    paths = [n.path for n in index.nodes]
    assert paths == ["/ul[1]/li[1]/text()[1]", "/ul[1]/li[2]/text()[1]", "/ul[1]/li[2]/text()[2]"]
    value = index.xpath_range(*find_html_spans(index, "three")[0])
    assert value["start"] == "/ul[1]/li[2]/text()[2]" and value["startOffset"] == 0


def test_html_implicit_tbody_and_document_wrappers():
    html = "<html><head><title>ignored</title></head><body><table><tr><td>cell</td></tr></table></body></html>"
    index = html_text(html)
    assert index.text == "cell"
    assert index.nodes[0].path == "/table[1]/tbody[1]/tr[1]/td[1]/text()[1]"


def test_html_emoji_offsets_are_code_points():
    index = html_text("<p>🐱 cat</p>")
    value = index.xpath_range(*find_html_spans(index, "cat")[0])
    assert value["startOffset"] == 2 and value["endOffset"] == 5


def test_html_not_found_and_bad_range():
    index = html_text("<p>hello</p>")
    assert find_html_spans(index, "goodbye") == []
    assert index.xpath_range(3, 3) is None


def test_html_crlf_and_pre_newline_follow_the_browser():
    index = html_text("<p>a\r\nb</p><pre>\ncode\n</pre>")
    assert index.text == "a\nbcode\n"
    assert [(n.path, n.start, n.end) for n in index.nodes] == [("/p[1]/text()[1]", 0, 3), ("/pre[1]/text()[1]", 3, 8)]
