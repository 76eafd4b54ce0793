"""Tools that build the book from this repository; not part of the installed ``coursekit``.

* :mod:`tools.toc`: the table of contents without the Solutions part (``make book-students``).
* :mod:`tools.execute_book`: executes the book's pages several at once into the build's cache
  (``make book``, ``make test``).

``coursekit/notebooks.py`` (pairing the ``.md`` sources with their notebooks, the install cell,
the repository URL) stays in the package: ``python -m coursekit assign``, an instructor's
command that ships with ``coursekit``, writes the exercise notebooks with it.
"""
