"""The ``{zh}`` role: Chinese text, marked as such for the browser and for LaTeX.

``{zh}`生成器``` becomes ``<span lang="zh-Hans" class="zh">生成器</span>`` in HTML (screen readers
switch voice, and ``_static/readable.css`` gives it a CJK font stack) and ``\\DUrolezh{生成器}`` in
LaTeX, which ``_config.yml`` defines as a group in Noto Serif CJK SC with Chinese line breaking.
XeLaTeX has no font fallback, so marking the text is what makes the PDF show the glyphs; for
the LaTeX builder, a post-transform also marks every other run of Chinese characters (a title in
the bibliography, say) outside code and math.
"""

import re

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform

CJK = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+")


class chinese(nodes.inline):
    """Inline Chinese text."""


def _role(name, rawtext, text, lineno, inliner, options=None, content=None):
    return [chinese(rawtext, text, classes=["zh"])], []


def _visit_html(self, node):
    self.body.append(self.starttag(node, "span", "", lang="zh-Hans"))


def _depart_html(self, node):
    self.body.append("</span>")


def _visit_latex(self, node):
    self.body.append(r"\DUrolezh{")


def _depart_latex(self, node):
    self.body.append("}")


def _visit_text(self, node):
    pass


class MarkChinese(SphinxPostTransform):
    """Wrap runs of CJK characters left unmarked in :class:`chinese` nodes (LaTeX only)."""

    builders = ("latex",)
    default_priority = 990  # after the bibliography and the references are resolved

    def run(self, **kwargs):
        skip = (chinese, nodes.literal, nodes.literal_block, nodes.math, nodes.math_block,
                nodes.raw, nodes.FixedTextElement)
        for text in list(self.document.findall(nodes.Text)):
            parent = text.parent
            if parent is None or isinstance(parent, skip) or not CJK.search(text.astext()):
                continue
            if any(isinstance(a, skip) for a in _ancestors(parent)):
                continue
            pieces, last, source = [], 0, text.astext()
            for match in CJK.finditer(source):
                if match.start() > last:
                    pieces.append(nodes.Text(source[last:match.start()]))
                pieces.append(chinese(match.group(), match.group(), classes=["zh"]))
                last = match.end()
            if last < len(source):
                pieces.append(nodes.Text(source[last:]))
            parent.replace(text, pieces)


def _ancestors(node):
    while node is not None:
        yield node
        node = node.parent


def setup(app):
    app.add_post_transform(MarkChinese)
    app.add_role("zh", _role)
    app.add_node(chinese, html=(_visit_html, _depart_html), latex=(_visit_latex, _depart_latex),
                 text=(_visit_text, _visit_text), man=(_visit_text, _visit_text),
                 texinfo=(_visit_text, _visit_text))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
