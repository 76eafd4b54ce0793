"""Execute the book's notebooks into its jupyter-cache, several at once, before the build.

jupyter-book 1 executes the pages of a build one after another, so on the course's two-core CI
one core idles through most of the book build. ``python tools/execute_book.py [--jobs N]``
(``make book`` and ``make test`` call it) reads every page of ``_toc.yml`` the way myst-nb reads
it, so that its cache key is the one the build looks up; executes the pages whose outputs are
not cached yet, ``N`` at a time, with the build's own settings from ``_config.yml`` (each page
in its own folder, no error allowed, the same timeout); and stores them in the build's cache.
``jupyter-book build`` then finds every page cached and executes none. A page that fails is
reported with its error, and the command exits 1; the build would fail on it in the same way.

Example:
    >>> sorted(_toc_files({"root": "a", "parts": [{"chapters": [{"file": "b",
    ...                    "sections": [{"file": "c"}]}]}]}))
    ['a', 'b', 'c']
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _toc_files(toc) -> list[str]:
    """Every ``file`` entry (and the ``root``) of a parsed ``_toc.yml``, in order."""
    found = []
    if isinstance(toc, dict):
        for key in ("root", "file"):
            if isinstance(toc.get(key), str):
                found.append(toc[key])
        for value in toc.values():
            if isinstance(value, (dict, list)):
                found += _toc_files(value)
    elif isinstance(toc, list):
        for value in toc:
            found += _toc_files(value)
    return found


def _pages(config: dict) -> list[Path]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages = []
    for name in _toc_files(toc):
        for suffix in ("", ".md", ".ipynb"):
            path = ROOT / f"{name}{suffix}"
            if path.is_file() and path.suffix in (".md", ".ipynb"):
                pages.append(path)
                break
    excluded = config.get("execute", {}).get("exclude_patterns") or []
    return [p for p in pages if not any(p.relative_to(ROOT).match(x) for x in excluded)]


def _read(path: Path, extensions: list[str]):
    """The page as myst-nb reads it in the build (None: a Markdown page that is no notebook),
    with the reader's format, which the cache records."""
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    content = path.read_text(encoding="utf-8")
    reader = create_nb_reader(str(path), MdParserConfig(enable_extensions=set(extensions)),
                              NbParserConfig(), content)
    if reader is None:
        return None, None
    return reader.read(content), reader.read_fmt


def _execute(path: str, notebook: str, timeout: int, allow_errors: bool):
    """Run in a worker process: the executed notebook (JSON), the error text or None, seconds."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.reads(notebook, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=allow_errors, meta_override=True)
    error = None if result.err is None else (result.exc_string or repr(result.err))
    return nbformat.writes(nb), error, result.time


def main(argv: list[str] | None = None) -> int:
    import nbformat
    import yaml
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    execute = config.get("execute", {})
    if execute.get("execute_notebooks") != "cache" or execute.get("run_in_temp"):
        print("tools/execute_book.py: _config.yml does not execute into a cache in each "
              "page's folder; leaving execution to jupyter-book")
        return 0
    extensions = config.get("parse", {}).get("myst_enable_extensions", [])
    cache = get_cache(str(ROOT / execute.get("cache", "_build/.jupyter_cache")))
    todo = []
    for path in _pages(config):
        nb, read_fmt = _read(path, extensions)
        if nb is None:
            continue
        try:
            cache.match_cache_notebook(nb)
        except KeyError:
            todo.append((path, nb, read_fmt))
    if not todo:
        print("tools/execute_book.py: every page's outputs are cached")
        return 0
    timeout, allow = int(execute.get("timeout", 30)), bool(execute.get("allow_errors", False))
    print(f"tools/execute_book.py: executing {len(todo)} page(s), {args.jobs} at once",
          flush=True)
    start, failed = time.perf_counter(), []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(_execute, str(path), nbformat.writes(nb), timeout, allow):
                   (path, read_fmt) for path, nb, read_fmt in todo}
        for future in as_completed(futures):
            path, read_fmt = futures[future]
            name = path.relative_to(ROOT)
            executed, error, seconds = future.result()
            if error is not None:
                failed.append(name)
                print(f"FAILED {name} ({seconds:.0f} s):\n{error[-3000:]}", flush=True)
                continue
            # as myst-nb's cache client does: the page joins the project, its outputs the cache
            if read_fmt is not None:
                record = cache.add_nb_to_project(str(path), read_data=read_fmt)
            else:
                record = cache.add_nb_to_project(str(path))
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(executed, as_version=4), record.uri,
                              data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True)
            print(f"  {seconds:6.1f} s  {name}", flush=True)
    print(f"tools/execute_book.py: {len(todo) - len(failed)} of {len(todo)} page(s) executed "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
