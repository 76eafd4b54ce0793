"""A small Sphinx extension that keeps the built book self-contained.

Jupyter Book 1 always loads sphinx-thebe (live code cells backed by a remote kernel), even with
launch buttons off; it registers its configuration script twice (a JavaScript error on every page)
and points at a CDN. The course has no remote kernels, so both scripts are dropped from every page.
"""


def _drop_thebe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    context["script_files"] = [
        js for js in scripts
        if "sphinx-thebe" not in str(getattr(js, "filename", js) or "")
        and "THEBE_JS_URL" not in str(getattr(js, "attributes", {}).get("body", ""))]


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
