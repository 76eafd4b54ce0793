"""Chapter 7's figures: a character GPT against the Kneser-Ney n-gram on the same validation
split, their mixture, and the Python help desk beside its baselines.

1. The n-gram baseline: modified Kneser-Ney of orders 3-9 (bits per character on ``val``).
2. The chapter's GPT (``chapter_recipe``: ``CHAPTER_STEPS`` steps on random windows, the
   learning rate decayed to zero over the budget), and, unless ``--long-steps 0``, the same model
   and schedule over ``LONG_STEPS`` steps.
3. The best model: the GPT (the longer run when there is one) and the 8-gram mixed,
   ``w p_gpt + (1 - w) p_ngram``, with ``w`` chosen on ``dev`` and reported on ``val``; the
   chapter's GPT mixed the same way (``mix_bpc_chapter``, the chapter's own mixture).
4. The help desk: thresholds chosen on the dev questions under a decline target, reported on the
   test questions (answerable, off-domain and near-domain unanswerable), with BM25 as the
   standard sparse retrieval baseline, the risk-coverage curve, and ROUGE-L and BLEU beside
   copying the question and one fixed generic reply.

CPU times are ``time.process_time()`` of each worker (one torch thread). The committed
``benchmarks/results/text.json`` was measured on a CPU shared with other jobs, and its
``budget`` field says whether the long run was made. The last line is
``gpt_bpc_chapter=... ngram_bpc=... best_bpc=... helpdesk_topic_acc=... grounding=... decline=...
decline_near=...``; the other figures of the results file (the mixture weights, the chapter's
mixture, the training-text figures and CPU seconds, the long run's) are printed on the line before.

    OMP_NUM_THREADS=1 python benchmarks/text.py [--long-steps 3000] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from concurrent.futures import ProcessPoolExecutor

from coursekit import results, seed_everything
from coursekit.models.gpt import GPT
from coursekit.text.helpdesk import HelpDesk, HelpDeskConfig, load_questions, risk_coverage
from coursekit.text.lm import best_weight, bits_per_char, interpolate
from coursekit.text.ngram import KneserNeyLM
from coursekit.text.recipes import (CHAPTER_STEPS, LONG_STEPS, char_splits, chapter_recipe,
                                    random_windows)
from coursekit.text.tokenize import CharTokenizer
from coursekit.train import fit


def ngram_job(quick: bool) -> dict:
    """Kneser-Ney orders 3-9 on val, and the 8-gram's per-token log-probabilities."""
    torch.set_num_threads(1)
    splits, tok, ids = _data(quick)
    out = {"orders": {}}
    for order in ((3, 8) if quick else (3, 5, 7, 8, 9)):
        start = time.process_time()
        lm = KneserNeyLM(order).fit(ids["train"], tok.vocab_size)
        out["orders"][order] = (lm.bits_per_char(ids["val"]), time.process_time() - start)
        if order == 8:
            out["val"], out["dev"] = lm.token_logprobs(ids["val"]), lm.token_logprobs(ids["dev"])
    return out


def gpt_job(steps: int, quick: bool) -> dict:
    """The chapter's GPT recipe trained for ``steps`` steps; val/dev log-probabilities."""
    torch.set_num_threads(1)
    splits, tok, ids = _data(quick)
    config, train_config = chapter_recipe(tok.vocab_size, device="cpu", steps=max(steps, 100))
    windows = random_windows(ids["train"], config.block_size, steps * train_config.batch_size,
                             seed=train_config.seed)
    seed_everything(train_config.seed)
    model = GPT(config)
    start = time.process_time()
    result = fit(model, windows, train_config)
    seconds = time.process_time() - start
    return {"val": model.token_logprobs(ids["val"]), "dev": model.token_logprobs(ids["dev"]),
            "train_bpc": model.bits_per_char(ids["train"][:len(ids["val"])]),
            "last_step_bpc": result.history.step_losses["bpc"][-1], "seconds": seconds,
            "steps": steps}


def _data(quick: bool):
    splits = char_splits()
    tok = CharTokenizer.from_text(splits["train"] + splits["dev"])
    ids = {name: tok.encode(text) for name, text in splits.items()}
    if quick:
        ids = {"train": ids["train"][:20_000], "dev": ids["dev"][:3_000],
               "val": ids["val"][:3_000]}
    return splits, tok, ids


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--long-steps", type=int, default=LONG_STEPS,
                        help="steps of the longer GPT run (0: skip it)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (for the tests)")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    splits, tok, ids = _data(args.quick)
    print(f"characters: train {len(ids['train']):,}  dev {len(ids['dev']):,}  "
          f"val {len(ids['val']):,}  vocabulary {tok.vocab_size}")
    print(f"uniform model: {math.log2(tok.vocab_size):.3f} bits/char")
    chapter_steps = 100 if args.quick else CHAPTER_STEPS
    long_steps = (0 if args.quick else args.long_steps)
    with ProcessPoolExecutor(3) as pool:
        ngram_run = pool.submit(ngram_job, args.quick)
        chapter_run = pool.submit(gpt_job, chapter_steps, args.quick)
        long_run = pool.submit(gpt_job, long_steps, args.quick) if long_steps else None
        desk_report = _help_desk()
        ngram, chapter = ngram_run.result(), chapter_run.result()
        long = long_run.result() if long_run else None

    print("\n-- Kneser-Ney n-grams (val bits/char, fit CPU seconds)")
    for order, (bpc, seconds) in ngram["orders"].items():
        print(f"order {order}: {bpc:.3f}  ({seconds:.1f} s)")
    ngram_bpc = bits_per_char(ngram["val"])
    print(f"8-gram: {ngram_bpc:.3f} bits/char")

    print(f"\n-- GPT, the chapter's recipe ({chapter['steps']} steps, cosine to zero)")
    chapter_bpc = bits_per_char(chapter["val"])
    print(f"{chapter['seconds']:.0f} CPU s; val {chapter_bpc:.3f} bits/char, on a stretch of "
          f"the training text {chapter['train_bpc']:.3f} (gap {chapter_bpc - chapter['train_bpc']:.3f}"
          f": a model that has not overfitted is short of compute, not of data); n-gram "
          f"{ngram_bpc:.3f}")
    w_chapter = best_weight(chapter["dev"], ngram["dev"])
    mix_bpc_chapter = bits_per_char(interpolate(chapter["val"], ngram["val"], w_chapter))
    best, w, best_bpc = chapter, w_chapter, mix_bpc_chapter
    long_bpc = float("nan")
    if long:
        long_bpc = bits_per_char(long["val"])
        print(f"\n-- GPT, the longer run ({long['steps']} steps, same model and schedule)")
        print(f"{long['seconds']:.0f} CPU s; val {long_bpc:.3f} bits/char, training text "
              f"{long['train_bpc']:.3f}")
        best = long
        w = best_weight(best["dev"], ngram["dev"])
        best_bpc = bits_per_char(interpolate(best["val"], ngram["val"], w))
    print(f"\n-- mixture w * GPT ({best['steps']} steps) + (1 - w) * 8-gram, w = {w:.2f} "
          f"chosen on dev")
    print(f"val {best_bpc:.3f} bits/char; 8-gram {ngram_bpc:.3f}; "
          f"{'beats' if best_bpc < ngram_bpc else 'misses'} the n-gram by "
          f"{abs(ngram_bpc - best_bpc):.3f}")
    if long:
        print(f"with the chapter's GPT instead: w = {w_chapter:.2f}, val {mix_bpc_chapter:.3f}")

    report, bm25, curve, desk = desk_report
    print("\n-- help desk (thresholds chosen on dev questions; test questions)")
    print(f"threshold {desk.config.threshold:.3f}, min coverage {desk.config.min_coverage:.2f}")
    for name, r in (("TF-IDF", report), ("BM25", bm25)):
        print(f"{name:7s} topic accuracy {r['topic_accuracy']:.2f}  grounding "
              f"{r['grounding']:.2f}  decline off-domain {r['decline_rate']:.2f}  near-domain "
              f"{r['decline_near']:.2f}")
    print(f"{'answers':<20}{'ROUGE-L':>9}{'BLEU':>8}")
    for name in ("help desk", "copy the question", "generic reply"):
        print(f"{name:<20}{report[f'rougeL[{name}]']:>9.3f}{report[f'bleu[{name}]']:>8.2f}")
    print("risk-coverage on test (coverage, selective accuracy, 95 % Wilson interval):")
    for row in curve[::max(1, len(curve) // 8)] + curve[-1:]:
        print(f"  {row['coverage']:.2f}  {row['accuracy']:.2f}  [{row['low']:.2f}, "
              f"{row['high']:.2f}]")

    figures = {"gpt_bpc_chapter": chapter_bpc, "ngram_bpc": ngram_bpc, "best_bpc": best_bpc,
               "helpdesk_topic_acc": report["topic_accuracy"], "grounding": report["grounding"],
               "decline": report["decline_rate"], "decline_near": report["decline_near"]}
    last_line = list(figures)  # issue 22's keys; the figures below are printed before them
    figures.update(mixture_weight=w, mix_bpc_chapter=mix_bpc_chapter,
                   mixture_weight_chapter=w_chapter, gpt_train_bpc_chapter=chapter["train_bpc"],
                   gpt_seconds_chapter=chapter["seconds"])
    if long:
        figures.update(gpt_bpc_long=long_bpc, gpt_train_bpc_long=long["train_bpc"],
                       gpt_seconds_long=long["seconds"])
    extra = {"ngram_orders": {str(k): v[0] for k, v in ngram["orders"].items()},
             "bm25": {k: bm25[k] for k in ("topic_accuracy", "decline_rate", "decline_near")},
             "threshold": desk.config.threshold, "min_coverage": desk.config.min_coverage,
             "rougeL": {k[7:-1]: v for k, v in report.items() if k.startswith("rougeL[")},
             "bleu": {k[5:-1]: v for k, v in report.items() if k.startswith("bleu[")},
             "risk_coverage": curve}
    gpt_config, gpt_train = chapter_recipe(tok.vocab_size)
    if not args.quick and not args.no_write:
        results.write("text", figures, seeds=[0],
                      budget=f"GPT {chapter_steps} steps (chapter) and {long_steps} steps "
                             f"(long run, 0: skipped) of {gpt_train.batch_size} x "
                             f"{gpt_config.block_size} characters",
                      extra=extra)
    print(" ".join(f"{k}={v:.3f}" for k, v in figures.items() if k not in last_line))
    print(" ".join(f"{k}={figures[k]:.3f}" for k in last_line))
    return figures


def _help_desk():
    desk = HelpDesk.calibrated()
    test = load_questions("test")
    bm25 = HelpDesk(config=HelpDeskConfig(retriever="bm25"))
    bm25.calibrate(load_questions("dev"))
    return desk.evaluate(test), bm25.evaluate(test), risk_coverage(desk, test), desk


if __name__ == "__main__":
    main()
