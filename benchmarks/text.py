"""Chapter 7's figures: a character GPT against the Kneser-Ney n-gram on the same validation
split, their mixture, and the Python help desk beside its trivial baselines.

1. The n-gram baseline: modified Kneser-Ney of orders 3-9 (bits per character on ``val``).
2. The chapter's GPT (``chapter_recipe``: what the chapter trains within its 90-second budget).
3. The longer run (``long_recipe``, stopped early on ``dev``, at most ``--budget`` CPU seconds).
4. The best model: GPT and 8-gram mixed, ``w p_gpt + (1 - w) p_ngram``, with ``w`` chosen on
   ``dev`` and reported on ``val`` (``w`` = 0 or 1 is allowed, so the mixture is never chosen
   worse than its parts on ``dev``).
5. The help desk: thresholds chosen on the dev questions, reported on the test questions; ROUGE-L
   and BLEU beside copying the question and one fixed generic reply.

CPU times are ``time.process_time()`` of this process (one torch thread). The last line is
``gpt_bpc_chapter=... ngram_bpc=... best_bpc=... helpdesk_topic_acc=... grounding=... decline=...``

    OMP_NUM_THREADS=1 python benchmarks/text.py [--budget 480] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from coursekit import seed_everything
from coursekit.models.gpt import GPT, make_windows
from coursekit.text.helpdesk import HelpDesk, load_questions
from coursekit.text.lm import best_weight, bits_per_char, interpolate
from coursekit.text.ngram import KneserNeyLM
from coursekit.text.recipes import chapter_recipe, char_splits, long_recipe
from coursekit.text.tokenize import CharTokenizer
from coursekit.train import EarlyStopping, fit


class CpuBudget:
    """A ``fit`` callback that stops once this process has used ``seconds`` of CPU time."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.process_time()

    def __call__(self, state) -> bool:
        return time.process_time() - self.start > self.seconds


def train_gpt(recipe, tok, splits, budget: float | None, quick: bool):
    config, train_config = recipe(tok.vocab_size, device="auto")
    if quick:
        config.n_layer, config.block_size, train_config.epochs = 1, 32, 1
    ids = tok.encode(splits["train"][:20_000] if quick else splits["train"])
    windows = make_windows(ids, config.block_size, config.block_size)
    dev_windows = make_windows(tok.encode(splits["dev"]), config.block_size, config.block_size)
    seed_everything(train_config.seed)  # the initial weights: the same as the chapter's
    model = GPT(config)
    stopper = EarlyStopping("val_bpc", patience=2)
    callbacks = [stopper] + ([CpuBudget(budget)] if budget else [])
    start = time.process_time()
    result = fit(model, windows, train_config, val_data=dev_windows, callbacks=callbacks)
    stopper.restore(model)
    return model, result.history, time.process_time() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=480.0,
                        help="CPU seconds for the longer GPT run (the issue allows 600)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (for the tests)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    splits = char_splits()
    tok = CharTokenizer.from_text(splits["train"] + splits["dev"])
    ids = {name: tok.encode(text) for name, text in splits.items()}
    if args.quick:
        ids = {"train": ids["train"][:20_000], "dev": ids["dev"][:3_000],
               "val": ids["val"][:3_000]}
    print(f"characters: train {len(ids['train']):,}  dev {len(ids['dev']):,}  "
          f"val {len(ids['val']):,}  vocabulary {tok.vocab_size}")
    print(f"uniform model: {math.log2(tok.vocab_size):.3f} bits/char")

    print("\n-- Kneser-Ney n-grams (val bits/char, fit CPU seconds)")
    for order in (3, 5, 7, 8, 9):
        start = time.process_time()
        lm = KneserNeyLM(order).fit(ids["train"], tok.vocab_size)
        seconds = time.process_time() - start
        print(f"order {order}: {lm.bits_per_char(ids['val']):.3f}  ({seconds:.1f} s)")
    ngram = KneserNeyLM(8).fit(ids["train"], tok.vocab_size)
    ngram_val, ngram_dev = ngram.token_logprobs(ids["val"]), ngram.token_logprobs(ids["dev"])
    ngram_bpc = bits_per_char(ngram_val)
    print(f"8-gram: {ngram_bpc:.3f} bits/char (issue anchor: 1.55)")

    print("\n-- GPT, the chapter's recipe")
    gpt, hist, seconds = train_gpt(chapter_recipe, tok, splits, None, args.quick)
    chapter_bpc = gpt.bits_per_char(ids["val"])
    print(f"{hist.epochs} epochs, {seconds:.0f} CPU s, train {hist.losses['bpc'][-1]:.3f}, "
          f"val {chapter_bpc:.3f} bits/char (n-gram {ngram_bpc:.3f}; goal <= 1.9)")

    print("\n-- GPT, the longer run (early stopping on dev)")
    gpt, hist, seconds = train_gpt(long_recipe, tok, splits, args.budget if not args.quick
                                   else 5.0, args.quick)
    gpt_val, gpt_dev = gpt.token_logprobs(ids["val"]), gpt.token_logprobs(ids["dev"])
    gpt_bpc = bits_per_char(gpt_val)
    dev_curve = " ".join(f"{v:.3f}" for v in hist.metrics["val_bpc"])
    print(f"{hist.epochs} epochs, {seconds:.0f} CPU s; dev bits/char per epoch: {dev_curve}")
    print(f"val {gpt_bpc:.3f} bits/char (n-gram {ngram_bpc:.3f})")

    w = best_weight(gpt_dev, ngram_dev)
    best_bpc = bits_per_char(interpolate(gpt_val, ngram_val, w))
    print(f"\n-- mixture w * GPT + (1 - w) * 8-gram, w = {w:.2f} chosen on dev")
    print(f"val {best_bpc:.3f} bits/char; 8-gram {ngram_bpc:.3f}; "
          f"{'beats' if best_bpc < ngram_bpc else 'misses'} the n-gram by "
          f"{abs(ngram_bpc - best_bpc):.3f}")

    print("\n-- help desk (thresholds chosen on dev questions; test questions)")
    desk = HelpDesk.calibrated()
    report = desk.evaluate(load_questions("test"))
    print(f"threshold {desk.config.threshold:.3f}, min coverage {desk.config.min_coverage:.2f}")
    print(f"topic accuracy {report['topic_accuracy']:.2f}  grounding {report['grounding']:.2f}  "
          f"decline {report['decline_rate']:.2f}")
    print(f"{'answers':<20}{'ROUGE-L':>9}{'BLEU':>8}")
    for name in ("help desk", "copy the question", "generic reply"):
        print(f"{name:<20}{report[f'rougeL[{name}]']:>9.3f}{report[f'bleu[{name}]']:>8.2f}")

    figures = {"gpt_bpc_chapter": chapter_bpc, "ngram_bpc": ngram_bpc, "best_bpc": best_bpc,
               "helpdesk_topic_acc": report["topic_accuracy"], "grounding": report["grounding"],
               "decline": report["decline_rate"]}
    print(" ".join(f"{k}={v:.3f}" for k, v in figures.items()))
    return figures


if __name__ == "__main__":
    main()
