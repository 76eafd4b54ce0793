"""Run a chapter elsewhere: the Colab button and the install cell of downloaded notebooks.

The repository's URL is one setting, ``repository: url:`` in ``_config.yml`` (read by
:func:`coursekit.notebooks.repository_url`). With a URL, sphinx-book-theme puts a Colab button on
every notebook page, opening the page's ``.ipynb`` from the repository. Without one, the launch
URLs are cleared here, so there is no button and no warning (Jupyter Book would otherwise fill in
its own repository as a default).

The executed notebooks offered by each page's download button (``_build/html/_sources``) get the
same first cell as the notebooks in the repository (:func:`coursekit.notebooks.install_cell`),
which installs ``coursekit`` where the kernel lacks it.
"""

import json
from pathlib import Path

from coursekit.notebooks import repository_url, with_install_cell

LAUNCH_KEYS = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url")


def _configure(app, config):
    url = repository_url(Path(app.srcdir))
    options = dict(config.html_theme_options or {})
    launch = dict(options.get("launch_buttons") or {})
    if url:
        options["repository_url"] = url
    else:
        launch.update({key: "" for key in LAUNCH_KEYS})
    options["launch_buttons"] = launch
    config.html_theme_options = options


def _add_install_cells(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    url = repository_url(Path(app.srcdir))
    for path in sorted(Path(app.outdir, "_sources").rglob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(with_install_cell(notebook, url), indent=1,
                                   ensure_ascii=False) + "\n", encoding="utf-8")


def setup(app):
    app.connect("config-inited", _configure, priority=900)
    app.connect("build-finished", _add_install_cells)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
