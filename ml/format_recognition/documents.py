"""Files in the shapes real ones take, beyond tables: SVG, feeds, configuration, pages, code.

The table writers (ml.format_recognition.writers) make data files; real XML is more often an
SVG icon, a feed or a manifest, real YAML a configuration, real JSON a nested settings object,
real HTML a page full of scripts or a template fragment, and real "not a data file" a Python
module, a C header, a shared library or a certificate. Each maker here is seeded like the
writers and uses the standard library or the writers behind the training set (lxml, PyYAML,
json), so the bytes are what those tools write.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import textwrap
from collections.abc import Callable
from typing import Any

import yaml
from lxml import etree

from ml.format_recognition.writers import WORDS, table

_NAMES = [w for w in WORDS if w.isascii() and len(w) > 2]


def _word(rng: random.Random) -> str:
    return rng.choice(_NAMES)


def _phrase(rng: random.Random, low: int = 2, high: int = 9) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _ident(rng: random.Random) -> str:
    style = rng.random()
    parts = [_word(rng) for _ in range(rng.randint(1, 3))]
    if style < 0.4:
        return "_".join(parts)
    if style < 0.7:
        return parts[0] + "".join(p.title() for p in parts[1:])
    return "-".join(parts)


def _serialise(root: Any, rng: random.Random, declaration: float = 0.5) -> bytes:
    return etree.tostring(
        root,
        xml_declaration=rng.random() < declaration,
        encoding=rng.choice(["UTF-8", "UTF-8", "utf-8", "ISO-8859-1"]),
        pretty_print=rng.random() < 0.7,
    )


# --- XML -----------------------------------------------------------------------------------

_SVG = "http://www.w3.org/2000/svg"


def svg_bytes(rng: random.Random) -> bytes:
    """An SVG drawing (icons, charts): paths, groups, titles, styles."""
    size = rng.choice([16, 18, 24, 32, 64, 128, 440, 721])
    nsmap = (
        {None: _SVG}
        if rng.random() < 0.9
        else {None: _SVG, "xlink": "http://www.w3.org/1999/xlink"}
    )
    root = etree.Element(f"{{{_SVG}}}svg", nsmap=nsmap)
    root.set("width", str(size))
    root.set("height", str(size))
    root.set("viewBox", f"0 0 {size} {size}")
    if rng.random() < 0.5:
        root.set("fill", rng.choice(["none", "currentColor"]))
    if rng.random() < 0.3:
        etree.SubElement(root, f"{{{_SVG}}}title").text = _word(rng).title()
    if rng.random() < 0.2:
        etree.SubElement(
            root, f"{{{_SVG}}}style"
        ).text = f".{_word(rng)} {{ fill: #{rng.randrange(16**6):06x}; }}"
    if rng.random() < 0.3:
        root.append(etree.Comment(f" {_phrase(rng)} "))
    parent = root
    for _ in range(rng.randint(1, 25)):
        if rng.random() < 0.15:
            parent = etree.SubElement(root, f"{{{_SVG}}}g")
            parent.set("clip-path", f"url(#clip{rng.randint(0, 99)})")
        kind = rng.choice(["path", "rect", "circle", "line", "text"])
        node = etree.SubElement(parent, f"{{{_SVG}}}{kind}")
        if kind == "path":
            points = " ".join(
                f"{rng.choice('MLCQ')}{rng.uniform(0, size):.4f} {rng.uniform(0, size):.4f}"
                for _ in range(rng.randint(2, 30))
            )
            node.set("d", points + " Z")
        elif kind == "text":
            node.text = _phrase(rng, 1, 4)
        else:
            node.set("x", f"{rng.uniform(0, size):.1f}")
            node.set("y", f"{rng.uniform(0, size):.1f}")
        node.set(
            rng.choice(["fill", "stroke"]), rng.choice([f"#{rng.randrange(16**6):06X}", "none"])
        )
    return _serialise(root, rng, declaration=0.4)


def feed_bytes(rng: random.Random) -> bytes:
    """An RSS or Atom feed (titles, links, dates: words HTML uses too)."""
    atom = rng.random() < 0.5
    if atom:
        ns = "http://www.w3.org/2005/Atom"
        root = etree.Element(f"{{{ns}}}feed", nsmap={None: ns})
        etree.SubElement(root, f"{{{ns}}}title").text = _phrase(rng)
        parent, item, q = root, "entry", f"{{{ns}}}"
    else:
        root = etree.Element("rss", version="2.0")
        parent = etree.SubElement(root, "channel")
        etree.SubElement(parent, "title").text = _phrase(rng)
        etree.SubElement(parent, "link").text = f"https://{_word(rng)}.example.com/"
        item, q = "item", ""
    for i in range(rng.randint(1, 15)):
        entry = etree.SubElement(parent, q + item)
        etree.SubElement(entry, q + "title").text = _phrase(rng)
        link = etree.SubElement(entry, q + "link")
        url = f"https://{_word(rng)}.example.com/{_word(rng)}/{i}"
        if atom:
            link.set("href", url)
        else:
            link.text = url
        etree.SubElement(
            entry, q + ("updated" if atom else "pubDate")
        ).text = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z"
        etree.SubElement(entry, q + ("summary" if atom else "description")).text = _phrase(
            rng, 5, 30
        )
    return _serialise(root, rng, declaration=0.8)


def config_xml_bytes(rng: random.Random) -> bytes:
    """Configuration-like XML: a manifest, a build file, a schema, a property list."""
    kind = rng.randrange(4)
    if kind == 0:  # a Maven-style build file
        ns = "http://maven.apache.org/POM/4.0.0"
        root = etree.Element(f"{{{ns}}}project", nsmap={None: ns})
        for key in ("modelVersion", "groupId", "artifactId", "version"):
            etree.SubElement(root, f"{{{ns}}}{key}").text = f"{_word(rng)}.{_word(rng)}"
        deps = etree.SubElement(root, f"{{{ns}}}dependencies")
        for _ in range(rng.randint(0, 12)):
            dep = etree.SubElement(deps, f"{{{ns}}}dependency")
            etree.SubElement(dep, f"{{{ns}}}artifactId").text = _ident(rng)
            etree.SubElement(
                dep, f"{{{ns}}}version"
            ).text = f"{rng.randint(0, 9)}.{rng.randint(0, 20)}"
        return _serialise(root, rng, declaration=0.8)
    if kind == 1:  # an XML schema
        ns = "http://www.w3.org/2001/XMLSchema"
        root = etree.Element(f"{{{ns}}}schema", nsmap={"xs": ns})
        for _ in range(rng.randint(1, 10)):
            element = etree.SubElement(root, f"{{{ns}}}element", name=_ident(rng))
            element.set("type", rng.choice(["xs:string", "xs:int", "xs:date", "xs:boolean"]))
            if rng.random() < 0.3:
                doc = etree.SubElement(
                    etree.SubElement(element, f"{{{ns}}}annotation"), f"{{{ns}}}documentation"
                )
                doc.text = _phrase(rng, 4, 16)
        return _serialise(root, rng, declaration=0.9)
    if kind == 2:  # an Apple property list (with its DOCTYPE)
        entries = "".join(
            f"\t<key>{_ident(rng)}</key>\n\t"
            + rng.choice(
                [
                    f"<string>{_phrase(rng, 1, 3)}</string>",
                    f"<integer>{rng.randint(0, 999)}</integer>",
                    "<true/>",
                ]
            )
            + "\n"
            for _ in range(rng.randint(1, 20))
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST '
            '1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n'
            f"<dict>\n{entries}</dict>\n</plist>\n"
        ).encode()
    # an application manifest or settings file, attributes and comments
    root = etree.Element(rng.choice(["configuration", "assembly", "settings", "manifest"]))
    if rng.random() < 0.5:
        root.append(etree.Comment(f" {_phrase(rng, 3, 12)} "))
    for _ in range(rng.randint(1, 15)):
        section = etree.SubElement(root, _ident(rng).replace("-", "_"))
        for _ in range(rng.randint(0, 4)):
            section.set(
                _ident(rng).replace("-", "_"), rng.choice([_word(rng), str(rng.randint(0, 99))])
            )
        for _ in range(rng.randint(0, 3)):
            etree.SubElement(section, "add", key=_ident(rng), value=_phrase(rng, 1, 3))
    return _serialise(root, rng, declaration=0.7)


# --- HTML ----------------------------------------------------------------------------------


def page_bytes(rng: random.Random) -> bytes:
    """A real-looking web page: head with meta/link/script, nav, sections, inline scripts."""
    title = _phrase(rng, 1, 4).title()
    head = [f'<meta charset="{rng.choice(["utf-8", "UTF-8"])}">', f"<title>{title}</title>"]
    if rng.random() < 0.7:
        head.append('<meta name="viewport" content="width=device-width,initial-scale=1">')
    for _ in range(rng.randint(0, 5)):
        head.append(
            f'<link rel="stylesheet" href="/static/{_word(rng)}.{rng.randrange(16**8):08x}.css">'
        )
    for _ in range(rng.randint(0, 4)):
        head.append(
            f'<script defer src="/static/js/{_word(rng)}.{rng.randrange(16**8):08x}.js"></script>'
        )
    if rng.random() < 0.4:
        head.append(
            "<style>body{margin:0;font-family:sans-serif}."
            + _word(rng)
            + "{color:#333;padding:4px 8px}</style>"
        )
    sections = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.3:
            sections.append(f"<h{rng.randint(1, 4)}>{_phrase(rng)}</h{rng.randint(1, 4)}>")
        elif kind < 0.6:
            sections.append(f'<p class="{_word(rng)}">{_phrase(rng, 8, 40)}</p>')
        elif kind < 0.75:
            items = "".join(
                f'<li><a href="/{_word(rng)}">{_phrase(rng, 1, 3)}</a></li>'
                for _ in range(rng.randint(1, 8))
            )
            sections.append(f"<ul>{items}</ul>")
        elif kind < 0.85:
            sections.append(f'<div id="{_ident(rng)}"><span>{_phrase(rng)}</span><br></div>')
        else:
            sections.append(
                "<script>window.__"
                + _word(rng)
                + " = "
                + json.dumps({_word(rng): rng.randint(0, 99) for _ in range(rng.randint(1, 5))})
                + ";</script>"
            )
    sep = rng.choice(["", "\n", "\n  "])
    body = f"<body>{sep}" + sep.join(sections) + f"{sep}</body>"
    lang = rng.choice(["", ' lang="en"', ' lang="de"'])
    page = f"<html{lang}><head>{sep}" + sep.join(head) + f"{sep}</head>{sep}{body}</html>"
    start = rng.choice(["<!DOCTYPE html>\n", "<!doctype html>", "<!DOCTYPE html>", ""])
    if rng.random() < 0.1:
        start = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 '
            'Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
        )
        page = page.replace("<html", '<html xmlns="http://www.w3.org/1999/xhtml"', 1)
    return (start + page + rng.choice(["", "\n"])).encode()


def fragment_bytes(rng: random.Random) -> bytes:
    """An HTML fragment or template: no <html>, perhaps Jinja or Django tags."""
    parts = []
    if rng.random() < 0.4:
        parts.append('{% extends "' + _word(rng) + '.html" %}\n{% block content %}')
    if rng.random() < 0.3:
        parts.append(
            f'<head>\n  <link rel="stylesheet" href="https://cdn.example.com/'
            f'{_word(rng)}.css" />\n</head>'
        )
    for _ in range(rng.randint(1, 10)):
        kind = rng.random()
        if kind < 0.3:
            parts.append(f'<div class="{_word(rng)}">\n  <p>{_phrase(rng, 4, 20)}</p>\n</div>')
        elif kind < 0.5:
            parts.append(
                "{% for "
                + _word(rng)
                + " in "
                + _word(rng)
                + "s %}<li>{{ "
                + _word(rng)
                + ".name }}</li>{% endfor %}"
            )
        elif kind < 0.7:
            rows = table(rng)[:8]
            cells = "".join(
                "<tr>" + "".join(f"<td>{v}</td>" for v in r.values()) + "</tr>\n" for r in rows
            )
            parts.append(f"<table>\n{cells}</table>")
        elif kind < 0.85:
            parts.append(
                f'<form action="/{_word(rng)}" method="post"><input type="text" '
                f'name="{_word(rng)}"><button>{_word(rng)}</button></form>'
            )
        else:
            parts.append(f'<img src="/{_word(rng)}.png" alt="{_phrase(rng, 1, 3)}"><br/>')
    if parts[0].startswith("{% extends"):
        parts.append("{% endblock %}")
    return "\n".join(parts).encode()


# --- YAML ----------------------------------------------------------------------------------


def _nested(rng: random.Random, depth: int) -> Any:
    if depth <= 0 or rng.random() < 0.3:
        return rng.choice(
            [_word(rng), rng.randint(0, 9999), rng.random() < 0.5, _phrase(rng, 2, 6), None,
             f"{_word(rng)}/"
             f"{_word(rng)}:{rng.randint(1, 9)}.{rng.randint(0, 9)}", round(rng.uniform(0, 10), 2)]
        )  # fmt: skip
    if rng.random() < 0.3:
        return [_nested(rng, depth - 1) for _ in range(rng.randint(1, 4))]
    return {_ident(rng): _nested(rng, depth - 1) for _ in range(rng.randint(1, 6))}


def _scalar(rng: random.Random) -> str:
    return rng.choice(
        [_word(rng), f'"{_phrase(rng, 1, 8)}"', str(rng.randint(0, 999)), "true", "false",
         f"{_word(rng)}/{_word(rng)}/"
         f"{_ident(rng)}.py", f"'{_phrase(rng, 1, 4)}'", f'"%({_word(rng)})s {_word(rng)}"']
    )  # fmt: skip


def handwritten_yaml_bytes(rng: random.Random) -> bytes:
    """YAML as people write it: blank lines between sections, quotes, inline comments, lists."""
    lines: list[str] = []
    indent = rng.choice([2, 2, 4])
    for _ in range(rng.randint(1, 10)):
        key = _ident(rng)
        kind = rng.random()
        comment = f"  # {_phrase(rng, 2, 8)}" if rng.random() < 0.15 else ""
        if kind < 0.1:  # prose in a value: quoted and folded, or a block scalar
            prose = textwrap.wrap(_paragraphs(rng, 1), width=rng.choice([60, 80, 200]))
            if rng.random() < 0.5:
                lines.append(f'{key}: "' + ("\n" + " " * indent).join(prose) + '"')
            else:
                lines.append(f"{key}: {rng.choice(['|', '>', '|-', '>-'])}")
                lines += [" " * indent + line for line in prose]
        elif kind < 0.4:
            lines.append(f"{key}: {_scalar(rng)}{comment}")
        elif kind < 0.7:
            lines.append(f"{key}:{comment}")
            pad = " " * (indent if rng.random() < 0.7 else 0)
            lines += [f"{pad}- {_scalar(rng)}" for _ in range(rng.randint(1, 5))]
        else:
            lines.append(f"{key}:")
            for _ in range(rng.randint(1, 5)):
                lines.append(" " * indent + f"{_ident(rng)}: {_scalar(rng)}")
                if rng.random() < 0.3:
                    lines.append(" " * indent + f"{_ident(rng)}:")
                    lines += [
                        " " * 2 * indent + f"{_ident(rng)}: {_scalar(rng)}"
                        for _ in range(rng.randint(1, 3))
                    ]
        if rng.random() < 0.5:
            lines.append("")
    if rng.random() < 0.2:
        lines.insert(0, "# " + _phrase(rng, 2, 10))
    return ("\n".join(lines).rstrip() + "\n").encode()


def config_yaml_bytes(rng: random.Random) -> bytes:
    """Configuration YAML: nested maps, lists, comments, several documents."""
    docs = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.random()
        if kind < 0.3:  # a Kubernetes-style manifest
            doc: Any = {
                "apiVersion": rng.choice(["v1", "apps/v1", "batch/v1"]),
                "kind": rng.choice(["Deployment", "Service", "ConfigMap", "Job"]),
                "metadata": {"name": _ident(rng), "labels": {"app": _word(rng)}},
                "spec": _nested(rng, 3),
            }
        elif kind < 0.5:  # a CI workflow
            doc = {
                "name": _phrase(rng, 1, 3),
                "on": {"push": {"branches": ["main"]}},
                "jobs": {
                    _ident(rng): {
                        "runs-on": "ubuntu-latest",
                        "steps": [
                            {"uses": "actions/checkout@v4"},
                            *(
                                {"name": _phrase(rng, 1, 4), "run": f"make {_word(rng)}"}
                                for _ in range(rng.randint(1, 5))
                            ),
                        ],
                    }
                },
            }
        else:
            doc = _nested(rng, rng.randint(2, 4))
            if not isinstance(doc, dict):
                doc = {_ident(rng): doc}
        docs.append(doc)
    text = yaml.safe_dump_all(
        docs,
        sort_keys=rng.random() < 0.3,
        default_flow_style=False,
        indent=rng.choice([2, 2, 4]),
        explicit_start=len(docs) > 1 or rng.random() < 0.2,
    )
    if rng.random() < 0.5 and text.count("\n") > 3:  # comments, as hand-written ones have
        lines = text.splitlines()
        for _ in range(rng.randint(1, 4)):
            spot = rng.randrange(len(lines) + 1)
            lines.insert(spot, "# " + _phrase(rng, 2, 10))
        text = "\n".join(lines) + "\n"
    return text.encode()


# --- JSON and NDJSON ------------------------------------------------------------------------


def config_json_bytes(rng: random.Random) -> bytes:
    """A nested JSON settings object, a schema or a tiny document."""
    kind = rng.random()
    if kind < 0.1:
        doc: Any = rng.choice(
            [{}, [], {"version": rng.randint(1, 3)}, [rng.randint(0, 9) for _ in range(5)]]
        )
    elif kind < 0.3:
        doc = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": _phrase(rng, 1, 3),
            "type": "object",
            "properties": {
                _ident(rng): {
                    "type": rng.choice(["string", "integer", "boolean"]),
                    "description": _phrase(rng),
                }
                for _ in range(rng.randint(1, 10))
            },
        }
    else:
        doc = {_ident(rng): _nested(rng, rng.randint(2, 5)) for _ in range(rng.randint(1, 8))}
    indent = rng.choice([None, 1, 2, 2, 4, "\t"])
    separators = (", ", " : ") if rng.random() < 0.1 else None
    text = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=rng.random() < 0.5)
    return (text + rng.choice(["", "\n"])).encode()


def events_ndjson_bytes(rng: random.Random) -> bytes:
    """Log events or API records, one nested JSON object per line (short lines too)."""
    lines = []
    for i in range(rng.choice([2, 3, 5, 20, 100])):
        record: dict[str, Any] = {
            rng.choice(
                ["ts", "time", "@timestamp"]
            ): f"2026-11-{rng.randint(1, 28):02d}T0{rng.randint(0, 9)}:00:00Z",
            rng.choice(["level", "severity"]): rng.choice(["info", "warn", "error"]),
        }
        if rng.random() < 0.7:
            record["msg"] = _phrase(rng)
        if rng.random() < 0.5:
            record[_word(rng)] = _nested(rng, 2)
        record["id"] = i
        lines.append(json.dumps(record, separators=(",", ":") if rng.random() < 0.5 else None))
    ending = rng.choice(["\n", "\n", "\r\n"])
    return (ending.join(lines) + ending).encode()


# --- text ----------------------------------------------------------------------------------


def _paragraphs(rng: random.Random, count: int) -> str:
    out = []
    for _ in range(count):
        sentences = " ".join(
            _phrase(rng, 5, 16).capitalize() + "." for _ in range(rng.randint(1, 6))
        )
        out.append(textwrap.fill(sentences, width=rng.choice([72, 79, 80, 100])))
    return "\n\n".join(out)


def document_text_bytes(rng: random.Random) -> bytes:
    """Text files as packages ship them: licences, metadata, changelogs, rst, lists."""
    kind = rng.randrange(9)
    if kind == 6:  # markdown with a YAML front matter (still text: a document)
        text = (
            f"---\nname: {_ident(rng)}\ndescription: {_phrase(rng, 6, 30)}\n---\n\n# "
            f"{_phrase(rng, 1, 4).title()}\n\n" + _paragraphs(rng, rng.randint(1, 5))
        )
    elif kind == 7:  # a licence or notice written as comment lines
        text = "\n".join(
            "# " + line if line else "#" for line in _paragraphs(rng, rng.randint(1, 4)).split("\n")
        )
    elif kind == 0:  # a licence
        text = (
            rng.choice(["MIT License", "BSD 3-Clause License", "Apache License"])
            + f"\n\nCopyright (c) {rng.randint(1990, 2026)} {_word(rng).title()}\n\n"
            + _paragraphs(rng, rng.randint(2, 8))
        )
    elif kind == 1:  # package metadata: RFC 822 headers, then a description
        headers = [
            "Metadata-Version: 2.1",
            f"Name: {_ident(rng)}",
            f"Version: {rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}",
            f"Summary: {_phrase(rng)}",
            f"Author-email: {_word(rng)} <{_word(rng)}@example.com>",
            "License: MIT",
            *(
                f"Classifier: Programming Language :: Python :: 3.{rng.randint(8, 13)}"
                for _ in range(rng.randint(0, 6))
            ),
            *(
                f"Requires-Dist: {_ident(rng)}>={rng.randint(0, 5)}.{rng.randint(0, 9)}"
                for _ in range(rng.randint(0, 8))
            ),
        ]
        text = "\n".join(headers) + "\n\n" + _paragraphs(rng, rng.randint(0, 4))
    elif kind == 2:  # a changelog in rst or markdown
        lines = []
        for v in range(rng.randint(1, 8)):
            title = (
                f"{rng.randint(0, 5)}.{v}.0 ({2026 - v}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)})"
            )
            if rng.random() < 0.5:
                lines += [title, "-" * len(title), ""]
            else:
                lines += [f"## {title}", ""]
            lines += [
                f"- {_phrase(rng, 4, 14).capitalize()}." for _ in range(rng.randint(1, 6))
            ] + [""]
        text = "\n".join(lines)
    elif kind == 3:  # a list of names, one a line (requirements, top_level.txt, INSTALLER)
        text = (
            "\n".join(
                rng.choice([_ident(rng), f"{_ident(rng)}>={rng.randint(0, 9)}.{rng.randint(0, 9)}"])
                for _ in range(rng.randint(1, 20))
            )
            + "\n"
        )
    elif kind == 4:  # wheel / entry-point files: key-value lines and sections
        lines = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.6:
                lines.append(f"[{_ident(rng)}]")
            lines += [
                f"{_ident(rng)} = {_ident(rng)}.{_word(rng)}:{_word(rng)}"
                if rng.random() < 0.5
                else f"{_ident(rng).title()}: {_word(rng)}"
                for _ in range(rng.randint(1, 6))
            ]
            lines.append("")
        text = "\n".join(lines)
    elif kind == 8:  # markdown tables (pipes) under an HTML comment
        rows = [f"|{_word(rng).title()}|{_phrase(rng, 1, 6)}|" for _ in range(rng.randint(2, 40))]
        text = (
            f"<!--\n{_phrase(rng, 4, 14).capitalize()}\n-->\n" if rng.random() < 0.5 else ""
        ) + "\n".join(["|Name|Note|", "|----|----|", *rows])
    else:  # a README in rst
        title = _phrase(rng, 1, 4).title()
        if rng.random() < 0.5:
            title = f".. _{_ident(rng)}:\n\n{title}"
        text = f"{'=' * len(title)}\n{title}\n{'=' * len(title)}\n\n" + _paragraphs(
            rng, rng.randint(1, 5)
        )
        text += (
            "\n\n.. code-block:: python\n\n    import " + _word(rng) + "\n\n" + _paragraphs(rng, 1)
        )
    return (text + "\n").encode(
        rng.choice(["utf-8", "utf-8", "utf-8", "latin-1"]), errors="replace"
    )


# --- other: not a data file ----------------------------------------------------------------


def python_bytes(rng: random.Random) -> bytes:
    """A Python module: docstring, imports, constants, functions, classes, comments."""
    if rng.random() < 0.15:  # a type stub: signatures and ellipses
        return "".join(
            f"def {_ident(rng).replace('-', '_')}({_word(rng)}: "
            f"{rng.choice(['int', 'str', 'bytes', 'bytes | str'])}) -> "
            f"{rng.choice(['float', 'bytes', 'None', 'int'])}: ...\n"
            for _ in range(rng.randint(1, 12))
        ).encode()
    lines = []
    if rng.random() < 0.4:
        lines.append(
            f"# {rng.choice(['Copyright', 'SPDX-License-Identifier: MIT', 'noqa'])} "
            f"{_phrase(rng, 0, 4)}"
        )
    if rng.random() < 0.6:
        lines.append(f'"""{_phrase(rng, 3, 12).capitalize()}."""')
        lines.append("")
    for _ in range(rng.randint(0, 6)):
        name = _ident(rng).replace("-", "_")
        lines.append(
            rng.choice([f"import {_word(rng)}", f"from {_word(rng)}.{_word(rng)} import {name}"])
        )
    lines.append("")
    for _ in range(rng.randint(1, 10)):
        kind = rng.random()
        name = _ident(rng).replace("-", "_")
        if kind < 0.25:
            lines.append(
                f"{name.upper()} = "
                + rng.choice([repr(_word(rng)), str(rng.randint(0, 999)), hex(rng.randrange(256))])
            )
        elif kind < 0.65:
            args = ", ".join(_word(rng) for _ in range(rng.randint(0, 3)))
            lines += [
                "",
                f"def {name}({args}):",
                f'    """{_phrase(rng, 3, 10).capitalize()}."""',
                f"    if {_word(rng)} is None:",
                f"        return {_word(rng)}",
                f"    return {_word(rng)}({args})",
            ]
        else:
            lines += [
                "",
                f"class "
                f"{name.title().replace('_', '')}({rng.choice(['object', 'Exception', 'Base'])}):",
                f"    {_word(rng)}: {rng.choice(['int', 'str', 'bool'])} = "
                f"{rng.choice(['0', 'None', 'True'])}",
                "",
                "    def __init__(self):",
                f"        self.{_word(rng)} = {{}}",
            ]
    return ("\n".join(lines) + "\n").encode()


def c_bytes(rng: random.Random) -> bytes:
    """A C or C++ source or header: block comments, includes, declarations."""
    guard = _ident(rng).upper().replace("-", "_") + "_H"
    lines = [
        "/*" + "-" * rng.randint(0, 70),
        " *",
        f" * {_word(rng)}.h",
        f" *\t  {_phrase(rng).capitalize()}",
        " */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
    ]
    for _ in range(rng.randint(1, 6)):
        opener, closer = rng.choice([("<", ">"), ('"', '"')])
        lines.append(f"#include {opener}{_word(rng)}.h{closer}")
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.4:
            lines.append(
                f"extern {rng.choice(['int', 'void', 'char *', 'size_t'])} "
                f"{_ident(rng).replace('-', '_')}"
                f"({rng.choice(['void', 'int n', 'const char *s'])});"
            )
        elif kind < 0.7:
            lines.append(
                f"#define {_ident(rng).upper().replace('-', '_')} "
                f"{rng.choice([str(rng.randint(0, 999)), hex(rng.randrange(65536))])}"
            )
        else:
            fields = "\n".join(
                f"\t{rng.choice(['int', 'double', 'char'])}\t\t{_word(rng)};\t/* "
                f"{_phrase(rng, 1, 5)} */"
                for _ in range(rng.randint(1, 6))
            )
            lines.append(f"typedef struct {_word(rng)}\n{{\n{fields}\n}} {_word(rng).title()};")
    lines.append(f"\n#endif\t\t\t\t\t\t\t/* {guard} */")
    return ("\n".join(lines) + "\n").encode()


def _selector(rng: random.Random) -> str:
    parts = [
        rng.choice([".", ".", "#", ""]) + _ident(rng).replace("_", "-")
        for _ in range(rng.randint(1, 3))
    ]
    return rng.choice([" ", " > ", ","]).join(parts)


_PROPERTIES = ["color", "margin", "padding", "display", "font-weight", "width", "border-top"]


def _declarations(rng: random.Random) -> list[str]:
    return [
        f"{rng.choice(_PROPERTIES)}:"
        + rng.choice(
            [
                "#666",
                "0 auto",
                "4px",
                "flex",
                "700",
                "100%",
                "1px solid #ccc",
                "none!important",
                f"#{rng.randrange(16**6):06x}",
            ]
        )
        for _ in range(rng.randint(1, 6))
    ]


def web_code_bytes(rng: random.Random) -> bytes:
    """CSS or JavaScript, pretty or minified (as bundlers ship it)."""
    if rng.random() < 0.3:  # minified CSS: one long line of rules
        return "".join(
            _selector(rng) + "{" + ";".join(_declarations(rng)) + "}"
            for _ in range(rng.randint(3, 120))
        ).encode()
    if rng.random() < 0.4:  # hand-written CSS
        return "\n\n".join(
            _selector(rng)
            + " {\n"
            + "".join(f"  {d.replace(':', ': ', 1)};\n" for d in _declarations(rng))
            + "}"
            for _ in range(rng.randint(1, 30))
        ).encode()
    rules = [
        f"const {_ident(rng).replace('-', '_')}=({_word(rng)})=>{{return "
        f"{_word(rng)}.{_word(rng)}({rng.randint(0, 9)})}};"
        if rng.random() < 0.5
        else f"export function {_ident(rng).replace('-', '_')}(a, b) {{\n  if (!a) return "
        f"null;\n  return a + b;\n}}"
        for _ in range(rng.randint(1, 30))
    ]
    sep = rng.choice(["\n", "", "\n\n"])
    return sep.join(rules).encode()


def certificate_bytes(rng: random.Random) -> bytes:
    """PEM certificates or keys: base64 between armour lines, perhaps with comments."""
    blocks = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            blocks.append(
                f"# Issuer: CN={_phrase(rng, 1, 3)} O={_word(rng).title()}\n# Serial: "
                f"{rng.getrandbits(120)}"
            )
        body = base64.encodebytes(rng.randbytes(rng.randint(200, 1500))).decode()
        kind = rng.choice(["CERTIFICATE", "PRIVATE KEY", "PUBLIC KEY"])
        blocks.append(f"-----BEGIN {kind}-----\n{body}-----END {kind}-----")
    return ("\n".join(blocks) + "\n").encode()


def elf_bytes(rng: random.Random) -> bytes:
    """A shared library's layout: ELF header, program headers, mostly-zero padding, code."""
    header = (
        b"\x7fELF\x02\x01\x01"
        + bytes(9)
        + struct.pack(
            "<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, rng.randint(10**5, 10**7), 0, 64, 56, 11, 64, 31, 30
        )
    )
    phdrs = b"".join(
        struct.pack(
            "<IIQQQQQQ",
            rng.choice([1, 2, 4, 6]),
            rng.randint(4, 6),
            rng.randrange(1 << 20),
            rng.randrange(1 << 20),
            rng.randrange(1 << 20),
            rng.randrange(1 << 16),
            rng.randrange(1 << 16),
            4096,
        )
        for _ in range(11)
    )
    body = bytearray()
    while len(body) < rng.randint(2000, 60000):
        body += (
            bytes(rng.randint(0, 600))
            if rng.random() < 0.4
            else rng.randbytes(rng.randint(16, 900))
        )
        if rng.random() < 0.2:
            body += b"\x00".join(f"{_ident(rng)}".encode() for _ in range(rng.randint(1, 20)))
    return header + phdrs + bytes(body)


def binary_bytes(rng: random.Random) -> bytes:
    """Binaries packages ship: NumPy arrays, pickles, fonts, sounds, compiled Python, images."""
    kind = rng.randrange(7)
    if kind == 0:  # .npy
        shape = tuple(rng.randint(1, 40) for _ in range(rng.randint(1, 3)))
        descr = rng.choice(["<f8", "<i8", "<f4", "|u1"])
        meta = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
        meta = meta.ljust(117) + "\n"
        size = 1
        for n in shape:
            size *= n
        return (
            b"\x93NUMPY\x01\x00"
            + struct.pack("<H", len(meta))
            + meta.encode()
            + rng.randbytes(min(size * 4, 40000))
        )
    if kind == 1:  # a pickle (protocol 4)
        import pickle

        return pickle.dumps(_nested(rng, 3), protocol=rng.choice([2, 4, 5]))
    if kind == 2:  # a TrueType font's table directory
        tables = b"".join(
            tag + rng.randbytes(12)
            for tag in (b"cmap", b"glyf", b"head", b"hhea", b"loca", b"name")
        )
        return (
            b"\x00\x01\x00\x00\x00\x06\x00\x80\x00\x02\x00\x20"
            + tables
            + rng.randbytes(rng.randint(500, 20000))
        )
    if kind == 3:  # a WAV sound
        samples = rng.randbytes(rng.randint(400, 20000))
        return (
            b"RIFF"
            + struct.pack("<I", 36 + len(samples))
            + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
            + b"data"
            + struct.pack("<I", len(samples))
            + samples
        )
    if kind == 4:  # compiled Python
        return (
            b"\xa7\x0d\x0d\x0a"
            + bytes(4)
            + rng.randbytes(8)
            + b"\xe3"
            + bytes(16)
            + rng.randbytes(rng.randint(200, 8000))
        )
    if kind == 5:  # a GIF or a JPEG, with their real structure at the start
        if rng.random() < 0.5:
            return (
                b"GIF89a"
                + struct.pack("<HH", rng.randint(1, 64), rng.randint(1, 64))
                + b"\xf7\x00\x00"
                + rng.randbytes(rng.randint(200, 5000))
                + b";"
            )
        return (
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb\x00C\x00"
            + rng.randbytes(rng.randint(300, 20000))
            + b"\xff\xd9"
        )
    # a MATLAB 5 file: a text header, then binary
    return (
        f"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: {_phrase(rng, 1, 3)}".ljust(
            116
        ).encode()
        + bytes(8)
        + b"\x00\x01IM"
        + rng.randbytes(rng.randint(100, 5000))
    )


# What generate.one draws from, beside the table writers: (maker, share of the class).
VARIANTS: dict[str, list[tuple[Callable[[random.Random], bytes], float]]] = {
    "xml": [(svg_bytes, 0.2), (feed_bytes, 0.1), (config_xml_bytes, 0.15)],
    "html": [(page_bytes, 0.35), (fragment_bytes, 0.15)],
    "yaml": [(config_yaml_bytes, 0.3), (handwritten_yaml_bytes, 0.35)],
    "json": [(config_json_bytes, 0.35)],
    "ndjson": [(events_ndjson_bytes, 0.35)],
    "text": [(document_text_bytes, 0.45)],
    "other": [
        (python_bytes, 0.15),
        (c_bytes, 0.08),
        (web_code_bytes, 0.07),
        (certificate_bytes, 0.05),
        (elf_bytes, 0.07),
        (binary_bytes, 0.13),
    ],  # fmt: skip
}

# The names files of each shape go by (generate.one gives a right name most of the time).
EXTENSIONS_OF: dict[Callable[[random.Random], bytes], list[str]] = {
    svg_bytes: ["svg"], feed_bytes: ["xml", "rss", "atom"],
    config_xml_bytes: ["xml", "xsd", "plist", "config"], page_bytes: ["html", "htm"],
    fragment_bytes: ["html", "jinja2", "tpl"], config_yaml_bytes: ["yaml", "yml"],
    handwritten_yaml_bytes: ["yaml", "yml"],
    config_json_bytes: ["json"], events_ndjson_bytes: ["ndjson", "jsonl", "log"],
    document_text_bytes: ["txt", "md", "rst"], python_bytes: ["py", "pyi"],
    c_bytes: ["h", "c", "cc", "cpp"], web_code_bytes: ["js", "css"], certificate_bytes: ["pem"],
    elf_bytes: ["so"], binary_bytes: ["npy", "pkl", "ttf", "wav", "pyc", "gif", "jpg", "mat"],
}  # fmt: skip
