"""PyTorch CPU side of the attribution benchmark: the knowledge-neuron-style algorithm (for each
answer token m and layer l, 20 scaled copies of the full sequence z_m, a forward hook scaling
the hooked tensor at p_m, autograd), float32, on a plain LlamaForCausalLM holding SmolLM2's
dequantized weights. A whole sample is Y·L such (m, l) batches, so this times `--pairs` of them
(evenly spread) and reports seconds per (m, l) (the median) and the extrapolated seconds per
sample (median · Y·L). `--pairs 0` times every (m, l) pair (the full run): then
seconds_per_sample_extrapolated is the measured total. seconds_total_measured is always the sum
over the timed pairs; full_run says whether every pair was run (--pairs 0).
Prints one JSON line per sample."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import torch  # noqa: E402
from fixtures_attribution import S, hooked_modules, smollm2_float64  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--samples", required=True, help="JSON list of {prompt: [...], answer: [...]}")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--pairs", type=int, default=3, help="(m, l) pairs to time; 0: every pair (full run)")
a = ap.parse_args()

torch.set_num_threads(a.threads)
gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
model = smollm2_float64(gdir, gname).float().eval()
L = model.config.num_hidden_layers
alphas = torch.arange(S + 1, dtype=torch.float32) / S

for sample in json.load(open(a.samples)):
    prompt, answer = sample["prompt"], sample["answer"]
    X, Y = len(prompt), len(answer)
    z = torch.tensor([prompt + answer[:-1]])
    pairs = [(m, l) for m in range(Y) for l in range(L)]
    full = a.pairs == 0
    chosen = pairs if full else [pairs[int(i * len(pairs) / a.pairs)] for i in range(min(a.pairs, len(pairs)))]
    times = []
    for (m, l) in chosen:
        p = X + m - 1
        ids = z[:, :p + 1].repeat(S + 1, 1)
        box = {}

        def hook(mod, inp, out):
            scaled = (alphas[:, None] * out[:, p, :].detach()).requires_grad_(True)
            box["x"] = scaled
            out = out.clone()
            out[:, p, :] = scaled
            return out

        t0 = time.perf_counter()
        h = hooked_modules(model)[l].register_forward_hook(hook)
        logits = model(ids).logits[:, p, :]
        prob = torch.softmax(logits, -1)[:, answer[m]]
        prob.sum().backward()
        grad = box["x"].grad
        _ = box["x"].detach()[S] * grad.sum(0) / S
        h.remove()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    per_pair = sorted(times)[len(times) // 2]
    total = sum(times)
    print(json.dumps({"prompt_tokens": X, "answer_tokens": Y, "pairs_timed": len(times),
                      "seconds_per_pair": per_pair,
                      "seconds_per_sample_extrapolated": total if full else per_pair * Y * L,
                      "seconds_total_measured": total, "full_run": full,
                      "threads": a.threads, "torch": torch.__version__}), flush=True)
