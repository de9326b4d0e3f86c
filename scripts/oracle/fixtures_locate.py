"""Float64 reference of a `cnl locate` run (SPEC's Eq. 7 expectation) on 4 GSM8K samples of SmolLM2.

Samples: GSM8K test rows ROWS (0-based), the 4 cheapest for a float64 oracle: one-digit final
answers (2 answer tokens) and the shortest questions among the first 100 rows, ~35 s each here
where the first 8 rows took 10 minutes. Tokens: fixtures_attribution.locate_sample_tokens (the
`cnl locate` template). Each sample's score [L, J] is fixtures_attribution.attribute(...,
cached=True) with S = 19 and the paper's normalization (float64 SmolLM2 from the GGUF, float64
throughout); the first two are that oracle's own smollm2-0/1 samples, whose scores are reused.
Score is their mean. No finite differences.

Output, under .assets/oracle/locate/:
  reference.safetensors  Score [L, J] f64, per_sample [4, L, J] f64,
                         prompt_lengths [4] i64, answer_lengths [4] i64
  samples.json           [{"prompt": [ids], "answer": [ids]}, ...]
  data.jsonl             the 4 GSM8K lines verbatim, in this order: the test's `cnl locate --data`
"""
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import fixtures_attribution as fa  # noqa: E402  (its main only runs as a script)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers as T  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

TOPIC = "locate"
OUT = os.path.join(common.ORACLE, TOPIC)
ROWS = [1, 18, 96, 48]
DEPS = os.path.join(OUT, ".deps")      # digest of fixtures_attribution.py, which the stamp does not cover


def deps_digest() -> str:
    return hashlib.sha256(open(fa.__file__, "rb").read()).hexdigest()


def gsm8k_lines(n):
    """The first n lines of the GSM8K test set, verbatim."""
    with open(common.GSM8K) as f:
        return [line for _, line in zip(range(n), f)]


def attribution_scores(prompt, answer):
    """The paper-normalized scores fixtures_attribution.py already computed for this exact
    sample (same tokens, same S, same code), or None."""
    from safetensors.numpy import load_file
    for i in range(len(fa.SMOLLM2_ROWS)):
        path = os.path.join(fa.OUT, f"smollm2-{i}", "reference.safetensors")
        if not os.path.exists(path):
            continue
        ref = load_file(path)
        if ref["prompt"].tolist() == prompt and ref["answer"].tolist() == answer:
            return ref["scores_paper"]
    return None


def main():
    if common.stamp_ok(TOPIC, __file__) and os.path.exists(DEPS) and open(DEPS).read() == deps_digest():
        common.log("locate: up to date")
        return
    assert fa.S == 19, fa.S
    os.makedirs(OUT, exist_ok=True)
    torch.set_grad_enabled(True)
    fa.float64_throughout()
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    tok = T.AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = None

    samples, per_sample = [], []
    lines = gsm8k_lines(max(ROWS) + 1)
    rows = [json.loads(lines[r]) for r in ROWS]
    for i, row in zip(ROWS, rows):
        prompt, answer = fa.locate_sample_tokens(tok, row)
        t0 = time.time()
        paper = attribution_scores(prompt, answer)
        source = "from the attribution oracle"
        if paper is None:
            model = model or fa.smollm2_float64(gdir, gname)
            paper = fa.attribute(model, prompt, answer, cached=True)[0]["paper"]
            source = f"{time.time() - t0:.0f} s"
        per_sample.append(paper)
        samples.append({"prompt": prompt, "answer": answer})
        common.log(f"  locate sample {i}: X={len(prompt)} Y={len(answer)} max|score|={np.abs(paper).max():.3e} ({source})")
    assert all(len(s["answer"]) == 2 for s in samples), "ROWS are meant to be one-digit answers"

    per = np.stack(per_sample).astype(np.float64)               # [4, L, J]
    score = per.mean(axis=0)
    save_file({
        "Score": score, "per_sample": per,
        "prompt_lengths": np.array([len(s["prompt"]) for s in samples], dtype=np.int64),
        "answer_lengths": np.array([len(s["answer"]) for s in samples], dtype=np.int64),
    }, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "samples.json"), "w") as f:
        json.dump(samples, f)
    with open(os.path.join(OUT, "data.jsonl"), "w") as f:
        f.write("".join(lines[r] if lines[r].endswith("\n") else lines[r] + "\n" for r in ROWS))
    dev = np.abs(score - score.mean())
    common.log(f"  locate: Score {score.shape} max|Score|={np.abs(score).max():.3e} "
               f"|Score-mean|>6 std: {int((dev > 6 * score.std()).sum())}")
    with open(DEPS, "w") as f:
        f.write(deps_digest())
    common.write_stamp(TOPIC, __file__)


if __name__ == "__main__":
    main()
