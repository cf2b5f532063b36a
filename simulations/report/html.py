"""The self-contained report page: escaped text, base64-embedded PNGs, no external resources."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from simulations.report.downstream import Table

# Counts the images the browser could decode; a headless browser test reads these attributes.
_IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var images = document.images, ok = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { ok++; }
  }
  document.body.dataset.imagesOk = String(ok);
  document.body.dataset.imagesTotal = String(images.length);
});
</script>"""

_STYLE = """<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #222;
       max-width: 1020px; margin: 1.5em auto; padding: 0 1em; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .caption { color: #555; font-size: 0.9em; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 0.5em 0.8em; margin: 0.6em 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; font-size: 0.85em; }
nav a { margin-right: 1em; }
</style>"""


@dataclass(frozen=True)
class Section:
    """One titled part of the report; ``body`` is HTML built with the helpers below."""

    anchor: str
    title: str
    body: str


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def note_html(text: str) -> str:
    """A short, visible note in place of what could not be shown."""
    return f'<p class="note">{escape(text)}</p>'


def image_html(png: Path, *, alt: str, caption: str | None = None) -> str:
    """A figure with the PNG embedded as a base64 data URI (the page needs no other file)."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
            f"{cap}</figure>")


def _is_number(cell: str) -> bool:
    head = cell.split(" ")[0].replace("−", "-")
    try:
        float(head)
    except ValueError:
        return False
    return True


def table_html(table: Table) -> str:
    """An HTML table; numeric cells right-aligned, ``table.bold`` cells in bold."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    head = f"<thead><tr>{head}</tr></thead>" if any(table.headers) else ""
    body = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, cell in enumerate(row):
            text = escape(cell)
            if (r, c) in table.bold:
                text = f"<strong>{text}</strong>"
            cls = ' class="num"' if _is_number(cell) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    notes = "".join(f'<p class="caption">{escape(n)}</p>' for n in table.notes)
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>{notes}"


def key_value_html(pairs: Sequence[tuple[str, str]]) -> str:
    """A two-column table of labels and values."""
    return table_html(Table(headers=("", ""), rows=tuple((k, v) for k, v in pairs)))


def preformatted(text: str, *, summary: str) -> str:
    """Collapsible preformatted text (e.g. a JSON config)."""
    return f"<details><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"


def render_page(*, title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole page: title, table of contents, sections, and the image-count script.

    Args:
        title: page and heading title (plain text).
        intro: HTML shown under the heading.
        sections: in page order.
    """
    nav = "".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in sections)
    parts = [f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>{s.body}</section>'
             for s in sections]
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"{_STYLE}</head>\n<body>\n<h1>{escape(title)}</h1>\n{intro}\n<nav>{nav}</nav>\n"
            + "\n".join(parts) + f"\n{_IMAGE_CHECK}\n</body></html>\n")
