"""A Sphinx transform that makes the solution pages read as solutions.

Each exercise is written once, as ``solutions/NN_topic.md`` (see ``coursekit/grader/assign.py``),
and the book renders that file as the solution page. Three things in it are for the exercise
generator, not for a reader, and this transform changes them on pages under ``solutions/``:

* the title ``Exercise N: ...`` becomes ``Solution N: ...`` (in the page, the navigation and the
  table of contents: the transform runs before Sphinx collects titles);
* the ``### BEGIN SOLUTION`` / ``### END SOLUTION`` marker lines leave the displayed code;
* the ``True`` that ``check(...)`` returns, shown as the cell's result, is dropped (its printed
  line, "all N public checks passed", stays).
"""

import re

from docutils import nodes
from sphinx.transforms import SphinxTransform

MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)
TITLE = re.compile(r"^Exercise(\s+\d+)")


def _is_check_cell(cell) -> bool:
    """Whether a notebook cell's code starts with ``check(``."""
    for part in cell.children:
        if isinstance(part, nodes.container) and "cell_input" in part.get("classes", []):
            return part.astext().lstrip().startswith("check(")
    return False


class SolutionPages(SphinxTransform):
    default_priority = 500  # after the notebook parser, before the title collector

    def apply(self):
        if not self.env.docname.startswith("solutions/"):
            return
        for section in self.document.findall(nodes.section):
            title = section.next_node(nodes.title)
            text = title.astext() if title else ""
            if TITLE.match(text):
                first = title.next_node(nodes.Text)
                if first is not None and first.astext().startswith("Exercise"):
                    first.parent.replace(first, nodes.Text(TITLE.sub(r"Solution\1",
                                                                     first.astext(), count=1)))
            break  # only the page title
        for block in list(self.document.findall(nodes.literal_block)):
            source = block.astext()
            if MARKER.search(source):
                cleaned = MARKER.sub("", source)
                block.children = [nodes.Text(cleaned)]
                block.rawsource = cleaned
        for cell in list(self.document.findall(nodes.container)):
            if "cell" not in cell.get("classes", []) or not _is_check_cell(cell):
                continue
            for output in list(cell.findall(nodes.literal_block)):
                if "text_plain" in output.get("classes", []) and output.astext().strip() == "True":
                    output.parent.remove(output)


def setup(app):
    app.add_transform(SolutionPages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
