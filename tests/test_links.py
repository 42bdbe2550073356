"""Every relative link in README.md and docs/*.md names a file that is there, and an anchor
a heading of it.

Anchors are GitHub's: a heading lower-cased, punctuation but ``-`` and ``_``
dropped, spaces as ``-``, and ``-1``, ``-2`` ... for repeats.
"""

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
# [text](target) and ![alt](target); a target ends at whitespace or ')'.
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(path):
    """The anchors of a Markdown file's headings, as GitHub makes them."""
    with open(path, encoding="utf-8") as f:
        text = _FENCE.sub("", f.read())
    seen, out = {}, set()
    for line in text.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(path):
    """(line number, target) of every relative link outside code blocks."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Blank the fenced blocks out, keeping their lines so numbers stay right.
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _LINK.finditer(re.sub(r"`[^`]*`", lambda m: m.group(0).replace("](", "]_("),
                                           line)):
            target = match.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                out.append((number, target))
    return out


def broken(path):
    """The page's relative links whose file or anchor is not there."""
    out = []
    for number, target in links(path):
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
            if file_part else path
        where = f"{os.path.relpath(path, REPO)}:{number}: {target}"
        if not os.path.exists(resolved):
            out.append(f"{where} (no {os.path.relpath(resolved, REPO)})")
        elif anchor and (not resolved.endswith(".md") or anchor not in anchors(resolved)):
            out.append(f"{where} (no heading #{anchor})")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_resolves(page):
    assert broken(page) == []


def test_a_broken_link_and_a_broken_anchor_are_found(tmp_path):
    (tmp_path / "a.md").write_text("# Top part\n\nSee [b](b.md), [top](#top-part), "
                                   "[gone](#gone), [`c`](c.md#x) and [web](https://x.test).\n"
                                   "```\n[not a link](nowhere.md)\n```\n")
    (tmp_path / "c.md").write_text("# Y\n")
    assert [line.split(": ", 1)[1] for line in broken(str(tmp_path / "a.md"))] == [
        "b.md (no " + os.path.relpath(str(tmp_path / "b.md"), REPO) + ")",
        "#gone (no heading #gone)", "c.md#x (no heading #x)"]
    assert anchors(str(tmp_path / "a.md")) == {"top-part"}
