"""report.md and report.html from results.json: the same sections, one page each.

report.html is self-contained: figures embedded as base64 PNG, the style inline, no
script and nothing fetched from the network, so it opens the same from a mail attachment."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from bertctl.atomic import atomic_write_text

BADGE = {"reproduced": "#1a7f37", "partly": "#9a6700", "not reproduced": "#cf222e", "not measured": "#57606a"}

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1f2328;line-height:1.5}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem} th,td{border:1px solid #d0d7de;padding:.3rem .6rem;
text-align:left} th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:.7rem;overflow-x:auto;font-size:.85rem;white-space:pre-wrap;word-break:break-all}
.badge{display:inline-block;color:#fff;border-radius:1rem;padding:.05rem .7rem;font-weight:600;font-size:.9rem}
figure{margin:1rem 0} figure img{max-width:min(100%,44rem);border:1px solid #d0d7de} figcaption{font-size:.88rem;color:#57606a}
.claim{font-size:1.08rem;font-style:italic} .note{color:#57606a;font-size:.9rem}
nav ul{columns:2;list-style:none;padding-left:0} nav li{margin:.15rem 0}
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def _steps_text(results: dict) -> str:
    s = results["steps"]
    return (f"profile {results['profile']}; {results['ran']} step(s) run and {results['reused']} reused in "
            f"{results['seconds']:.0f} s; {sum(v['status'] == 'skipped' for v in s.values())} skipped")


# ----------------------------------------------------------------------------- markdown


def _md_table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return ""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown(results: dict, out: Path) -> str:
    parts = ["# The lecture, reproduced\n", f"{_steps_text(results)}.\n", "## Verdicts\n",
             _md_table([{"#": e["number"], "experiment": f"[{e['title']}](#{e['name']})", "verdict": e["verdict"],
                         "why": e["why"]} for e in results["experiments"]], ["#", "experiment", "verdict", "why"])]
    for e in results["experiments"]:
        parts += [f'<a id="{e["name"]}"></a>\n', f"## {e['number']}. {e['title']}\n", f"*{e['claim']}*\n",
                  f"**Verdict: {e['verdict']}.** {e['why']}.\n", f"Criterion: {e['criterion']}.\n"]
        if e["reference"]:
            parts.append(f"Published: {e['reference']}\n")
        parts.append("Commands (run from the project root):\n\n```bash\n" + "\n".join(
            ("# skipped: " + c["skipped"] + "\n# " if c["skipped"] else "") + c["command"] for c in e["commands"])
            + "\n```\n")
        parts.append(_md_table(e["rows"], e["columns"]))
        for f in e["figures"]:
            parts.append(f"![{f['caption']}]({_relative(Path(f['path']), out)})\n")
        parts += [f"> {n}\n" for n in e["notes"]]
    return "\n".join(parts)


def _relative(path: Path, out: Path) -> str:
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------- HTML


def _html_table(rows: list[dict], columns: list[str], raw: tuple[str, ...] = ()) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            text = v if c in raw else html.escape(_fmt(v))
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _badge(verdict: str) -> str:
    return f'<span class="badge" style="background:{BADGE.get(verdict, "#57606a")}">{html.escape(verdict)}</span>'


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption, quote=True)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def page(results: dict) -> str:
    esc = html.escape
    toc = ['<li><a href="#verdicts">Verdicts</a></li>']
    toc += [f'<li><a href="#{e["name"]}">{e["number"]}. {esc(e["title"])}</a></li>' for e in results["experiments"]]
    verdicts = _html_table([{"#": e["number"], "experiment": f'<a href="#{e["name"]}">{esc(e["title"])}</a>',
                             "verdict": _badge(e["verdict"]), "why": esc(e["why"])} for e in results["experiments"]],
                           ["#", "experiment", "verdict", "why"], raw=("experiment", "verdict", "why"))
    body = [f"<h1>The lecture, reproduced</h1><p class=\"note\">{esc(_steps_text(results))}. Every number below is "
            "read from the run folders beside this page; every verdict is computed from them by the criterion "
            "shown.</p>",
            f"<nav><h2 id=\"contents\">Contents</h2><ul>{''.join(toc)}</ul></nav>",
            f'<section id="verdicts"><h2>Verdicts</h2>{verdicts}</section>']
    for e in results["experiments"]:
        commands = "\n".join(("# skipped: " + c["skipped"] + "\n# " if c["skipped"] else "") + c["command"]
                             + (f"   # failed: {c['error']}" if c["status"] == "failed" else "")
                             for c in e["commands"])
        parts = [f'<section id="{e["name"]}"><h2>{e["number"]}. {esc(e["title"])}</h2>',
                 f'<p class="claim">{esc(e["claim"])}</p>',
                 f"<p>{_badge(e['verdict'])} {esc(e['why'])}.</p>",
                 f"<p><b>Criterion:</b> {esc(e['criterion'])}.</p>"]
        if e["reference"]:
            parts.append(f"<p><b>Published:</b> {esc(e['reference'])}</p>")
        parts.append(f"<p><b>Commands</b> (from the project root):</p><pre><code>{esc(commands)}</code></pre>")
        parts.append(_html_table(e["rows"], e["columns"]))
        parts += [_img(Path(f["path"]), f["caption"]) for f in e["figures"]]
        parts += [f'<p class="note">{esc(n)}</p>' for n in e["notes"]]
        parts.append("</section>")
        body.append("".join(parts))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>bertctl reproduce: the lecture, reproduced</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_reports(results: dict, out: Path) -> None:
    atomic_write_text(out / "report.md", markdown(results, out))
    atomic_write_text(out / "report.html", page(results))
