"""PyTorch CPU side of the evaluation benchmark: HF transformers runs the same evaluation as
`cnl evaluate` (fixtures_evaluate.py's conventions: templates, tokenization, greedy decoding,
option scoring) over a task's JSONL records, at a given thread count, and prints one JSON line
{"task", "samples", "seconds", "samples_per_second", "threads", "accuracy", "mean_gold_loglik"}.

The timed part is the whole evaluation (tokenization included); loading SmolLM2 and one tiny
warm-up forward are not timed. Per sample the prompt runs once: generation decodes on its KV
cache (after one pass over prompt + gold answer, cropped back), choice options run on the
prompt's cache. --samples-out FILE writes the per-sample results (reference.json's layout).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import fixtures_evaluate as fe  # noqa: E402  (its main only runs as a script)

import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True, choices=sorted(fe.TASKS))
    ap.add_argument("--data", required=True, help="JSONL records of the task's format")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--samples-out", default=None)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    records = fe.read_records(a.data, a.limit)
    model, tok = fe.load_smollm2()
    with torch.inference_mode():
        model(torch.tensor([[tok.eos_token_id] * 4]), use_cache=True)
    t0 = time.perf_counter()
    ref = fe.evaluate_records(model, tok, a.task, records, fast=True)
    seconds = time.perf_counter() - t0
    if a.samples_out:
        with open(a.samples_out, "w") as f:
            json.dump(ref, f, indent=1, ensure_ascii=False)
    n = len(ref["samples"])
    print(json.dumps({"task": a.task, "samples": n, "seconds": seconds,
                      "samples_per_second": n / seconds if seconds > 0 else None, "threads": a.threads,
                      "accuracy": ref["accuracy"], "mean_gold_loglik": ref["mean_gold_loglik"]}), flush=True)


if __name__ == "__main__":
    main()
