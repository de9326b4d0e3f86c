"""Float64 reference of a `cnl locate` run (SPEC's Eq. 7 expectation) on 8 GSM8K samples of SmolLM2.

Samples: the first 8 rows of the GSM8K test set; prompt "Question: <question>\nAnswer:" (with the
special tokens the tokenizer adds), answer " <final answer>" (the text after the last "####",
stripped; no special tokens, no cap on its length). Each sample's score [L, J] is
fixtures_attribution.attribute(..., cached=True) with S = 19 and the paper's normalization
(float64 SmolLM2 from the GGUF, float64 throughout); Score is their mean. No finite differences.

Output, under .assets/oracle/locate/:
  reference.safetensors  Score [L, J] f64, per_sample [8, L, J] f64,
                         prompt_lengths [8] i64, answer_lengths [8] i64
  samples.json           [{"prompt": [ids], "answer": [ids]}, ...]
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
N_SAMPLES = 8
DEPS = os.path.join(OUT, ".deps")      # digest of fixtures_attribution.py, which the stamp does not cover


def deps_digest() -> str:
    return hashlib.sha256(open(fa.__file__, "rb").read()).hexdigest()


def sample_tokens(tok, row):
    prompt = tok("Question: " + row["question"] + "\nAnswer:")["input_ids"]
    answer = tok(" " + row["answer"].split("####")[-1].strip(), add_special_tokens=False)["input_ids"]
    return [int(t) for t in prompt], [int(t) for t in answer]


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
    model = fa.smollm2_float64(gdir, gname)

    samples, per_sample = [], []
    for i, row in enumerate(common.gsm8k_rows(N_SAMPLES)):
        prompt, answer = sample_tokens(tok, row)
        t0 = time.time()
        scores, _, _, _, _ = fa.attribute(model, prompt, answer, cached=True)
        per_sample.append(scores["paper"])
        samples.append({"prompt": prompt, "answer": answer})
        common.log(f"  locate sample {i}: X={len(prompt)} Y={len(answer)} "
                   f"max|score|={np.abs(scores['paper']).max():.3e} ({time.time() - t0:.0f} s)")
    assert len(samples) == N_SAMPLES, len(samples)

    per = np.stack(per_sample).astype(np.float64)               # [8, L, J]
    score = per.mean(axis=0)
    save_file({
        "Score": score, "per_sample": per,
        "prompt_lengths": np.array([len(s["prompt"]) for s in samples], dtype=np.int64),
        "answer_lengths": np.array([len(s["answer"]) for s in samples], dtype=np.int64),
    }, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "samples.json"), "w") as f:
        json.dump(samples, f)
    dev = np.abs(score - score.mean())
    common.log(f"  locate: Score {score.shape} max|Score|={np.abs(score).max():.3e} "
               f"|Score-mean|>6 std: {int((dev > 6 * score.std()).sum())}")
    with open(DEPS, "w") as f:
        f.write(deps_digest())
    common.write_stamp(TOPIC, __file__)


if __name__ == "__main__":
    main()
