# The course's two commands (see README.md):
#   make book   set up a virtual environment, install everything, build the HTML book
#   make test   set up, then run every test: notebook pairing, book build with warnings as
#               errors, unit tests, the browser check of the built book, and every notebook (nbval)
#   make lab    set up, then open the exercises in JupyterLab (LAB_ARGS="--no-browser --port 8890")
#   make pdf    (optional) the whole book as one PDF, _build/pdf/book.pdf, after make book
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
JOBS   ?= 2
# tools/execute_book.py runs JOBS of the book's notebooks at once into the build's cache, which
# jupyter-book (one page at a time) then reads
# tests/, coursekit/ (its docstring examples) and every folder that holds notebooks (nbval)
NOTEBOOK_DIRS = tests coursekit tools $(wildcard book solutions exercises)
# Offline first: the loaders never try the network in the book build or the tests.
export COURSEKIT_OFFLINE = 1
# The course's models are small: one thread per process trains them fastest, and the tests run two
# notebooks at once on a 2-core machine (more threads only wait on each other).
export OMP_NUM_THREADS = 1
export PYDEVD_DISABLE_FILE_VALIDATION = 1

.PHONY: setup book book-students pdf pdf-students test unit sync lab clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -e .
	touch $(STAMP)

book: setup
	$(PY) tools/execute_book.py --jobs $(JOBS)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The book without its Solutions part, for a class whose students should not see them.
book-students: setup
	$(PY) tools/toc.py
	$(VENV)/bin/jupyter-book build . --toc _build/_toc_nosolutions.yml --path-output _build/students \
		-W -n --keep-going
	@echo "The students' book is at $(CURDIR)/_build/students/_build/html/index.html"

# The whole book as one PDF (XeLaTeX), from the executed notebooks the HTML book cached; needs
# the Debian packages texlive-xetex latexmk fonts-noto-cjk fonts-dejavu-core (.ci/run installs
# them). pdf-students leaves the Solutions part out, like book-students.
pdf: setup
	$(VENV)/bin/jupyter-book build . --builder pdflatex
	mkdir -p _build/pdf && cp _build/latex/book.pdf _build/pdf/book.pdf
	@echo "The book as one PDF: $(CURDIR)/_build/pdf/book.pdf"

pdf-students: setup
	$(PY) tools/toc.py
	$(VENV)/bin/jupyter-book build . --builder pdflatex --toc _build/_toc_nosolutions.yml \
		--path-output _build/students
	mkdir -p _build/pdf && cp _build/students/_build/latex/book.pdf _build/pdf/book-students.pdf
	@echo "The students' PDF: $(CURDIR)/_build/pdf/book-students.pdf"

sync: setup
	$(PY) -m coursekit.notebooks sync

test: setup
	$(PY) tools/execute_book.py --jobs $(JOBS)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) -m pytest -n $(JOBS) --dist loadscope --timeout=1200 \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
		$(NOTEBOOK_DIRS)

unit: setup
	$(PY) -m pytest -n $(JOBS) --dist loadscope tests coursekit tools

# The exercises in JupyterLab, with this checkout's coursekit in the kernel (check() works).
lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/exercises \
		$(LAB_ARGS)

clean:
	rm -rf _build
