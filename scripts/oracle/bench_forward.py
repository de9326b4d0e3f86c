"""PyTorch CPU side of the forward benchmark: the same model, prompt ids, thread count and
protocol as `cnl bench forward` (prompt pass, then greedy tokens with the KV cache; one warm-up,
best of N repeats). Prints one JSON line."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402,F401

import torch  # noqa: E402
import transformers as T  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--token-ids", required=True)
ap.add_argument("--new-tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--repeats", type=int, default=3)
a = ap.parse_args()

torch.set_num_threads(a.threads)
if os.path.isdir(a.model):
    model = T.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
else:
    d, f = os.path.split(os.path.realpath(a.model))
    model = T.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
model.eval()
prompt = torch.tensor([[int(t) for t in a.token_ids.split(",")]])

best_prefill = best_decode = float("inf")
generated = []
with torch.inference_mode():
    for rep in range(a.repeats + 1):
        t0 = time.perf_counter()
        out = model(prompt, use_cache=True, logits_to_keep=1)
        t1 = time.perf_counter()
        past, logits, gen = out.past_key_values, out.logits[0, -1], []
        for i in range(a.new_tokens):
            nxt = int(logits.argmax())
            gen.append(nxt)
            if i + 1 < a.new_tokens:
                o = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past, logits = o.past_key_values, o.logits[0, -1]
        t2 = time.perf_counter()
        if rep > 0:
            best_prefill = min(best_prefill, t1 - t0)
            best_decode = min(best_decode, t2 - t1)
        generated = gen
print(json.dumps({"prompt_tokens": prompt.shape[1], "new_tokens": a.new_tokens, "threads": a.threads,
                  "prefill_seconds": best_prefill, "decode_seconds": best_decode, "generated": generated,
                  "torch": torch.__version__, "transformers": T.__version__}))
