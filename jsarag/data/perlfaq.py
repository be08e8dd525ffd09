"""Perl's documentation as a knowledge-grounded dialog task: the corpus format `perl_pod` and the
dataset format `perlfaq`, both read from the Debian package perl-doc (a `deb` download).

POD (perlpod, perlpodspec) is rendered to plain text here, without perl: paragraphs are split at
blank lines; command paragraphs `=head1`/`=head2` start a section, `=head3`/`=head4` and `=item`
keep their text inside it, `=over`/`=back`/`=pod`/`=cut`/`=encoding` and `=for` paragraphs are
dropped, as is everything inside `=begin X` ... `=end X` and after `=cut` until the next command.
Verbatim (indented) paragraphs are kept as they are. Formatting codes, single- or multi-bracket
(`C<< $a->b >>`), are rendered: B/I/C/F/S to their text, X (index entries) and Z to nothing,
E<lt>/E<gt>/E<verbar>/E<sol>, HTML names and numbers to their character, L<text|target> to its
text (and `<url>` after it when the target is a URL), L<name/"sec"> to `"sec" in name`.

Corpus `perl_pod`: every `.pod` under the directory `member:` (all of them when it is absent;
`exclude:` names pods to leave out, such as the tables of contents perltoc and perlfaq, which
list every FAQ question). Each `=head1`/`=head2` section becomes the passages `POD/HEADING#0`,
`#1`, ... of at most `passage_words` words (HEADING: the rendered heading, whitespace to `_`;
a heading met again in the same pod gets `~2`, `~3`). The heading of a FAQ section (perlfaq1-9)
is its question, so in those pods the title is the pod name alone and the heading is not in the
contents, which would make retrieval trivial; in the other pods the title is `POD: HEADING`.
A FAQ answer's leading attribution paragraph, `(contributed by brian d foy)` and the like, is not
part of the answer and is left out of the passages and the target alike.

Dataset `perlfaq`, `task: dialog`: one example per `=head2` of perlfaq1-9 (`members.train`: the
pod directory, or one perlfaq pod): `question` is the rendered heading, `target` the first
`target_words` words (default 48) of the answer, `history` is empty (the FAQ has no follow-up
turns), `gold_passages` the section `POD/HEADING`, which the gold check (jsarag.data.integrity.
check_gold, so prepare-dataset needs --corpus) replaces by the section's passages exactly as the
corpus wrote them. A question whose answer is empty is dropped and counted (`empty_answer`).
"""
from __future__ import annotations

import functools
import html.entities
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass

from jsarag import InputError
from jsarag.data import debian

FAQ = re.compile(r"perlfaq[1-9]")
DEFAULT_TARGET_WORDS = 48
ATTRIBUTION = re.compile(r"\((?:[^()]*\s)?contributed by [^()]*\)", re.I)
_COMMAND = re.compile(r"=([A-Za-z]\w*)\s*(.*)", re.S)
_BRACKETS = re.compile("<*")
_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}
Row = tuple[int, dict]


# --- formatting codes --------------------------------------------------------------------------
@functools.cache
def _stop(n: int) -> re.Pattern:
    """The next formatting code, or the end of the one open with n brackets."""
    return re.compile(r"[A-Z]<|" + (">" if n == 1 else r"\s+" + ">" * n))


def _parse(s: str, i: int, n: int | None) -> tuple[str, int]:
    """Rendered text from s[i] up to the end of the code open with n brackets (None: the end)."""
    out = []
    pat = _stop(n or 1)
    while True:
        m = pat.search(s, i)
        if m is None or (n is None and not m.group().endswith("<")):
            if m is None:
                out.append(s[i:])
                return "".join(out), len(s)
            out.append(s[i : m.end()])
            i = m.end()
            continue
        out.append(s[i : m.start()])
        if not m.group().endswith("<"):
            return "".join(out), m.end()
        letter, j = s[m.start()], m.end()
        k = _BRACKETS.match(s, j).end()
        brackets = k - j + 1
        ws = re.match(r"\s+", s[k:]) if brackets > 1 else None
        if ws is None:  # C<...>, or C<<x> (not a multi-bracket code: its first < opens it)
            inner, i = _parse(s, j, 1)
        else:
            inner, i = _parse(s, k + ws.end(), brackets)
        out.append(_apply(letter, inner))


def _entity(name: str) -> str:
    name = name.strip()
    if name in _ENTITIES:
        return _ENTITIES[name]
    if name in html.entities.name2codepoint:
        return chr(html.entities.name2codepoint[name])
    base = 16 if name.lower().startswith("0x") else 8 if name.startswith("0") and len(name) > 1 else 10
    try:
        return chr(int(name, base))
    except (ValueError, OverflowError):
        return f"E<{name}>"


def _link(inner: str) -> str:
    text, bar, target = inner.partition("|")
    if bar:
        return f"{text} <{target}>" if "://" in target else text
    if "://" in inner:
        return inner
    name, slash, sec = inner.partition("/")
    if not slash:
        return inner
    sec = sec.strip().strip('"')
    return f'"{sec}" in {name}' if name else f'"{sec}"'


def _apply(letter: str, inner: str) -> str:
    if letter in "XZ":
        return ""
    if letter == "E":
        return _entity(inner)
    if letter == "L":
        return _link(inner)
    return inner  # B I C F S, and any other letter: its text


def render(text: str) -> str:
    """A POD paragraph's formatting codes rendered to plain text."""
    return _parse(text, 0, None)[0]


# --- sections ----------------------------------------------------------------------------------
@dataclass
class Section:
    pod: str
    heading: str  # rendered
    level: int  # 1 or 2 (=head1, =head2); 0: text before the first heading
    line: int  # of the heading in the pod
    paragraphs: list[str]
    faq: bool
    id: str = ""

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)

    @property
    def title(self) -> str:
        return self.pod if self.faq or not self.heading else f"{self.pod}: {self.heading}"


def _paragraphs(text: str) -> Iterator[tuple[int, str]]:
    start, buf = 0, []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if not buf:
                start = n
            buf.append(line.rstrip())
        elif buf:
            yield start, "\n".join(buf)
            buf = []
    if buf:
        yield start, "\n".join(buf)


def sections(pod: str, text: str) -> list[Section]:
    """The =head1/=head2 sections of one pod (named without .pod), rendered, with unique ids."""
    faq = bool(FAQ.fullmatch(pod))
    out: list[Section] = []
    cur = Section(pod, "", 0, 1, [], faq)
    in_pod, regions = False, []
    for n, para in _paragraphs(text):
        cmd = _COMMAND.match(para)
        if cmd is None:
            body = para if para[0] in " \t" else " ".join(render(para).split())
            if in_pod and not regions and body:
                cur.paragraphs.append(body)
            continue
        name, rest = cmd.group(1), " ".join(cmd.group(2).split())
        in_pod = name != "cut"
        if name == "begin":
            regions.append(rest.split()[0] if rest else "")
        elif name == "end":
            if regions:
                regions.pop()
        elif regions:  # a command inside =begin X ... =end X
            continue
        elif name in ("head1", "head2"):
            out.append(cur)
            cur = Section(pod, render(rest).strip(), int(name[-1]), n, [], faq)
        elif name in ("head3", "head4") or name == "item":
            item = render(re.sub(r"^\*\s*", "", rest) if name == "item" else rest).strip()
            if item:
                cur.paragraphs.append(item)
        # =over, =back, =pod, =cut, =encoding, =for and unknown commands add no text
    out.append(cur)
    seen: dict[str, int] = {}
    kept = []
    for s in out:
        if s.level == 0 and not s.paragraphs:
            continue
        if s.faq and s.paragraphs and ATTRIBUTION.fullmatch(" ".join(s.paragraphs[0].split())):
            s.paragraphs = s.paragraphs[1:]
        slug = re.sub(r"\s+", "_", s.heading) or "_preamble"
        seen[slug] = seen.get(slug, 0) + 1
        s.id = f"{pod}/{slug}" + (f"~{seen[slug]}" if seen[slug] > 1 else "")
        kept.append(s)
    return kept


def read_pods(path, member: str | None, loc: str, exclude=()) -> Iterator[tuple[str, str]]:
    """(pod name, text) of every .pod under the directory `member` of a .deb, sorted by name."""
    if not debian.is_deb(path):
        raise InputError(f"{loc}: the Perl documentation is read from a Debian package (.deb, a deb or path download)")
    if member and member.endswith(".pod"):
        want = (lambda n: n == debian._norm(member))  # noqa: E731
    else:
        inside = debian.under(member) if member else (lambda n: True)  # noqa: E731
        want = (lambda n: n.endswith(".pod") and inside(n))  # noqa: E731
    pods = {}
    for name, data in debian.members(path, want):
        pod = posixpath.basename(name)[: -len(".pod")]
        if pod in exclude:
            continue
        if pod in pods:
            raise InputError(f"{loc}: two pods named {pod} ({name} and another); give member: one directory")
        try:
            pods[pod] = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = 1 + data.count(b"\n", 0, e.start)
            raise InputError(f"{path}!{name}:{line}: not UTF-8 (bad byte 0x{data[e.start]:02x})") from None
    if not pods:
        raise InputError(f"{loc}: no .pod files under {member or 'the package'}")
    for pod in sorted(pods):
        yield pod, pods[pod]


# --- readers -------------------------------------------------------------------------------------
def read_perl_pod(path, member, loc: str, passage_words: int, exclude=(), counts: dict | None = None) -> Iterator[Row]:
    """Corpus `perl_pod`: the passages of every section of every pod; `counts["pods"]` how many were read."""
    from jsarag.data.corpora import split_words

    counts = {} if counts is None else counts
    counts["pods"] = 0
    for pod, text in read_pods(path, member, loc, set(exclude)):
        counts["pods"] += 1
        for s in sections(pod, text):
            for c, chunk in enumerate(split_words(s.text, passage_words)):
                yield s.line, {"id": f"{s.id}#{c}", "title": s.title, "contents": chunk}


def read_perlfaq(path, member, loc: str, target_words: int = DEFAULT_TARGET_WORDS,
                 counts: dict | None = None) -> Iterator[tuple[str, dict]]:
    """Dataset `perlfaq`: one dialog example per =head2 question of perlfaq1-9."""
    counts = {} if counts is None else counts
    counts.setdefault("empty_answer", 0)
    for pod, text in read_pods(path, member, loc):
        if not FAQ.fullmatch(pod):
            continue
        for s in sections(pod, text):
            if s.level != 2:
                continue
            words = s.text.split()
            if not words:
                counts["empty_answer"] += 1
                continue
            yield f"{pod}.pod:{s.line}", {"id": s.id, "history": [], "question": s.heading,
                                          "target": " ".join(words[:target_words]), "gold_passages": [s.id]}
