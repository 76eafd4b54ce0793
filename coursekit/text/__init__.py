"""Text generation and the grounded help desk (Chapter 7).

Modules, one idea each:

* ``coursekit.text.lm``: the protocol every character model speaks (``logprobs``,
  ``token_logprobs``, ``bits_per_char``) and mixing two models (``interpolate``).
* ``coursekit.text.tokenize``: a character tokenizer (``CharTokenizer``) built from a training text.
* ``coursekit.text.ngram``: a character n-gram language model with modified Kneser-Ney smoothing.
* ``coursekit.text.sampling``: temperature, top-k and nucleus (top-p) sampling from any model with
  ``logprobs(context_ids)`` (the n-gram model and ``coursekit.models.gpt.GPT``).
* ``coursekit.text.helpdesk``: a retrieval "Python help desk" that answers from the offline Python
  documentation only, cites its topic, and declines out-of-scope questions.
* ``coursekit.text.ask``: the ``python -m coursekit ask`` command.
* ``coursekit.text.recipes``: the train/dev/val splits and the GPT recipes of the chapter and
  ``benchmarks/text.py``.

Importing this package imports nothing heavy.
"""
