"""``python -m coursekit grade review OUT``: one offline page per written task, to mark the
answers against their rubric (exercises part).

Each page (``OUT/review/<exercise>.<task>.html``) lists every submission's answer, rendered from
Markdown (math by a local copy of MathJax when one is installed) and sanitised: the Markdown
renderer escapes raw HTML, bleach keeps only formatting tags without attributes that run
anything, and the page's Content-Security-Policy lets only its own script run (by nonce), so an
answer holding ``<script>`` or ``<img onerror=...>`` does nothing. Beside each answer sits the
rubric: tick the criteria met, add a comment, press *Save marks*: the browser saves
``marks-<exercise>.<task>.json``, which ``grade review OUT --apply FILE`` adds to
``OUT/marks.json`` and merges into ``grades.csv``, the feedback files and the LMS exports
(:mod:`coursekit.grader.written`). A page opened again shows the saved marks; an answer that
changed after it was marked is flagged.
"""

from __future__ import annotations

import html
import json
import secrets
import shutil
from pathlib import Path

__all__ = ["render_answer", "write_pages", "ALLOWED_TAGS"]

ALLOWED_TAGS = ["p", "br", "em", "strong", "code", "pre", "ul", "ol", "li", "blockquote",
                "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr",
                "th", "td", "span", "div", "a", "del"]
ALLOWED_ATTRIBUTES = {"span": ["class"], "div": ["class"], "a": ["href", "title"]}


def _mathjax() -> Path | None:
    """A local MathJax (SVG output: one self-contained file), if sphinx-mathjax-offline is
    installed."""
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax" / "tex-svg.js"
    return path if path.exists() else None


def render_answer(text: str | None) -> str:
    """Sanitised HTML of a Markdown answer (math kept as ``\\(...\\)`` text for MathJax).

    Example:
        >>> print(render_answer("**EM** wins: $p(x)$ <script>alert(1)</script>"))
        <p><strong>EM</strong> wins: <span class="math inline">\\(p(x)\\)</span> &lt;script&gt;alert(1)&lt;/script&gt;</p>
    """
    try:
        import bleach
        from markdown_it import MarkdownIt
        from mdit_py_plugins.dollarmath import dollarmath_plugin
    except ImportError as error:
        raise ValueError(f"the review pages need {error.name}: pip install bleach "
                         "markdown-it-py mdit-py-plugins (all in requirements.txt)") from None

    if text is None:
        return '<p class="none">(no answer)</p>'

    def math(content: str, options: dict) -> str:
        display = bool(options.get("display_mode"))
        delimiters = ("\\[", "\\]") if display else ("\\(", "\\)")
        return html.escape(delimiters[0] + content + delimiters[1])

    md = MarkdownIt("commonmark", {"html": False}).enable("table").use(
        dollarmath_plugin, renderer=math)
    rendered = md.render(text)
    return bleach.clean(rendered, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                        protocols=["http", "https", "mailto"], strip=False).strip()


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1rem auto; padding: 0 1rem;
       line-height: 1.45; }
.answer { border: 1px solid #999; border-radius: 4px; padding: 0.5rem 1rem; margin: 1rem 0; }
.answer.flagged { border: 3px solid #b00; }
.text { background: #f6f6f6; padding: 0.25rem 0.75rem; }
.flag { color: #b00; font-weight: bold; }
.none { color: #666; font-style: italic; }
label { display: block; margin: 0.2rem 0; }
textarea { width: 100%; min-height: 3rem; }
.points { font-weight: bold; }
"""

SCRIPT = """
const DATA = JSON.parse(document.getElementById('review-data').textContent);
function collect() {
  const marks = {};
  for (const block of document.querySelectorAll('.answer')) {
    const id = block.dataset.submission;
    const boxes = Array.from(block.querySelectorAll('input.criterion'));
    const criteria = boxes.map(b => b.checked);
    const comment = block.querySelector('textarea').value;
    const touched = block.dataset.marked === 'yes' || criteria.some(c => c) || comment;
    if (touched) {
      marks[id] = {criteria: criteria, comment: comment,
                   answer_sha256: block.dataset.sha256,
                   marked_at: new Date().toISOString()};
    }
  }
  return marks;
}
function total(block) {
  let sum = 0;
  for (const box of block.querySelectorAll('input.criterion')) {
    if (box.checked) sum += Number(box.dataset.points);
  }
  block.querySelector('.points').textContent = String(Math.round(sum * 100) / 100);
}
for (const block of document.querySelectorAll('.answer')) {
  for (const box of block.querySelectorAll('input.criterion')) {
    box.addEventListener('change', () => { block.dataset.marked = 'yes'; total(block); });
  }
  total(block);
}
document.getElementById('save').addEventListener('click', () => {
  const saved = {kind: 'coursekit-marks', exercise: DATA.exercise, task: DATA.task,
                 marks: collect()};
  const blob = new Blob([JSON.stringify(saved, null, 1)], {type: 'application/json'});
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = DATA.filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  document.getElementById('saved').textContent =
    'Saved ' + Object.keys(saved.marks).length + ' mark(s) to ' + DATA.filename +
    ': run python -m coursekit grade review OUT --apply ' + DATA.filename;
});
"""


def _page(exercise: str, task: str, entries: list, marks: dict, mathjax: bool) -> str:
    nonce = secrets.token_urlsafe(16)
    esc = html.escape
    first = entries[0]["written"]
    title = f"{exercise}: {task}" + (f" ({first['title']})" if first.get("title") else "")
    filename = f"marks-{exercise}.{task}.json"
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
           "img-src data:; font-src data:; base-uri 'none'; form-action 'none'")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">',
             f"<title>Review {esc(title)}</title><style>{STYLE}</style>"]
    if mathjax:
        parts.append(f"<script nonce=\"{nonce}\">window.MathJax = {{tex: {{inlineMath: "
                     f"[['\\\\(', '\\\\)']]}}, options: {{processHtmlClass: 'math', "
                     f"ignoreHtmlClass: 'text'}}}};</script>")
        parts.append(f'<script nonce="{nonce}" src="tex-svg.js" defer></script>')
    rubric = first["rubric"]
    total = sum(c["points"] for c in rubric)
    parts += ["</head><body>", f"<h1>Review {esc(title)}</h1>",
              f"<p>{len(entries)} submission(s); the rubric is worth {total:g} point(s). Tick "
              "the criteria each answer meets, add a comment if you like, then press "
              f"<b>Save marks</b> and run <code>python -m coursekit grade review OUT --apply "
              f"{esc(filename)}</code>.</p>",
              '<p><button id="save" type="button">Save marks</button> <span id="saved">'
              "</span></p>"]
    for entry in entries:
        report, answer = entry["report"], entry["written"]
        mark = marks.get(report["submission"], {}).get(task)
        flagged = mark is not None and mark.get("answer_sha256") != answer["sha256"]
        ticked = mark["criteria"] if mark and len(mark["criteria"]) == len(rubric) \
            else [False] * len(rubric)
        who = report["submission"] + (f" (student {report['student']})"
                                      if report.get("student") else "")
        parts.append(
            f'<section class="answer{" flagged" if flagged else ""}" '
            f'data-submission="{esc(report["submission"])}" '
            f'data-sha256="{esc(answer["sha256"])}" data-marked="{"yes" if mark else "no"}">')
        parts.append(f"<h2>{esc(who)}</h2>")
        if flagged:
            parts.append('<p class="flag">The answer changed after it was marked: look at it '
                         "again.</p>")
        # the one place an answer enters the page: rendered and sanitised
        parts.append(f'<div class="text">{render_answer(answer["text"])}</div>')
        parts.append("<fieldset><legend>Rubric</legend>")
        for k, (criterion, tick) in enumerate(zip(rubric, ticked)):
            parts.append(
                f'<label><input type="checkbox" class="criterion" data-index="{k}" '
                f'data-points="{criterion["points"]:g}"{" checked" if tick else ""}> '
                f'{esc(criterion["text"])} ({criterion["points"]:g})</label>')
        comment = esc(mark.get("comment", "")) if mark else ""
        parts.append(f'<label>Comment for the student<textarea>{comment}</textarea></label>')
        parts.append(f'<p>Points: <span class="points">0</span> / {total:g}</p>')
        parts.append("</fieldset></section>")
    data = json.dumps({"exercise": exercise, "task": task, "filename": filename})
    data = data.replace("<", "\\u003c")  # no "</script>" can close the data block
    parts.append(f'<script type="application/json" id="review-data">{data}</script>')
    parts.append(f'<script nonce="{nonce}">{SCRIPT}</script></body></html>')
    return "\n".join(parts) + "\n"


def write_pages(out: Path, reports: list, marks: dict) -> list[Path]:
    """Write ``OUT/review/<exercise>.<task>.html`` for every written task of ``reports``;
    return the pages."""
    folder = Path(out) / "review"
    groups: dict = {}
    for report in reports:
        for task, answer in (report.get("written") or {}).items():
            if report.get("exercise"):
                groups.setdefault((report["exercise"], task), []).append(
                    {"report": report, "written": answer})
    if not groups:
        return []
    folder.mkdir(exist_ok=True)
    mathjax = _mathjax()
    if mathjax is not None:
        shutil.copyfile(mathjax, folder / "tex-svg.js")
    pages = []
    for (exercise, task), entries in sorted(groups.items()):
        page = folder / f"{exercise}.{task}.html"
        page.write_text(_page(exercise, task, entries, marks, mathjax is not None),
                        encoding="utf-8")
        pages.append(page)
    return pages
