"""Checks one `cnl enhance` arm against float64 PyTorch, independently of the Swift code.

  check_enhance.py train ITEMS.json DELTA.safetensors --lr LR --batch B --seed S --epochs E
      Retrains the delta's neurons (W_in rows only, SmolLM2) with torch.optim.Adam from the base
      weights: the same answer-NLL loss, the same per-epoch shuffle (SplitMix64 + Fisher–Yates,
      ported here from SPEC's convention), batch means of the per-sample losses. Prints JSON with
      the relative L2 and the worst entry of (cnl's update − torch's update), in units of lr.
  check_enhance.py apply ITEMS.json DELTA.safetensors
      The README's numpy recipe: writes the delta's rows into the HF state dict by the tensor names
      its metadata gives, then prints JSON with the mean answer-token log-likelihood of each item
      (prompt, answer) under the patched model, to compare with `cnl evaluate --delta`.

  check_enhance.py saved ITEMS.json DELTA.safetensors SAVED_DIR
      `--save-model`'s HF directory: loads it with transformers (AutoModelForCausalLM), prints JSON
      with each item's answer log-likelihood under it, and compares every tensor with the base
      checkpoint dequantized by gguf-py (float32): how many values outside the delta's slices
      differ (nothing else may move) and whether the slices hold the delta's values.

  check_enhance.py saved-gguf ITEMS.json SAVED_DIR MODEL.gguf
      `--save-model` of a GGUF that is not llama (Gemma 3): loads SAVED_DIR with transformers
      and MODEL.gguf with transformers' own GGUF loader (its own dequantization and config
      mapping), both float32, and prints JSON: each item's answer log-likelihood under the saved
      directory and under the GGUF, the largest |difference| of any tensor value, and the config
      fields where the two configs differ.

ITEMS.json: [{"prompt": [ids], "answer": [ids]}, ...] (the token ids cnl used).
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import fixtures_attribution as fa  # noqa: E402
import fixtures_enhance as fe  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

M = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & M

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)

    def below(self, n):
        limit = M - M % n
        while True:
            x = self.next()
            if x < limit:
                return x % n


def epoch_order(count, seed, epoch):
    rng = SplitMix64(SplitMix64(seed ^ ((0xE7A5C0DE00000000 + epoch) & M)).next())
    p = list(range(count))
    for i in range(count - 1, 0, -1):
        j = rng.below(i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def model():
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    return fa.smollm2_float64(gdir, gname)


def apply_delta(state_dict, path):
    """The README recipe: every part of the delta into the tensor its metadata names."""
    delta = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    J = int(meta["ffn_width"])
    for part in ("in_weight", "in_bias", "up_weight", "up_bias", "out_weight"):
        if part not in delta:
            continue
        name, index = re.fullmatch(r"(.*)\[(.*)\]", meta["hf_" + part]).groups()
        for k, n in enumerate(delta["neurons"]):
            layer, j = divmod(int(n), J)
            w = state_dict[name.format(layer=layer)]
            if index == "j, :":
                w[j, :] = delta[part][k]
            elif index == ":, j":
                w[:, j] = delta[part][k]
            else:
                w[j] = delta[part][k]
    return meta


def train(items, delta_path, lr, batch, seed, epochs):
    m = model()
    torch.set_grad_enabled(True)
    delta = load_file(delta_path)
    neurons = [int(n) for n in delta["neurons"]]
    J = m.config.intermediate_size
    rows = [(n // J, n % J) for n in neurons]
    weights = [m.model.layers[l].mlp.gate_proj.weight for l, _ in rows]
    with torch.no_grad():
        base = torch.stack([w[j].detach().clone() for w, (_, j) in zip(weights, rows)])
    leaf = torch.nn.Parameter(base.clone())
    opt = torch.optim.Adam([leaf], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    for epoch in range(1, epochs + 1):
        order = epoch_order(len(items), seed, epoch)
        for b in range(0, len(order), batch):
            members = order[b:b + batch]
            with torch.no_grad():
                for k, (w, (_, j)) in enumerate(zip(weights, rows)):
                    w[j] = leaf[k]
            m.zero_grad(set_to_none=True)
            loss = sum(fe.nll(m, items[i]["prompt"], items[i]["answer"]) for i in members) / len(members)
            loss.backward()
            leaf.grad = torch.stack([w.grad[j] for w, (_, j) in zip(weights, rows)]).detach().clone()
            opt.step()
    theirs = (leaf.detach() - base).numpy()
    ours = delta["in_weight"].astype(np.float64) - base.numpy()
    diff = ours - theirs
    return {"values": int(theirs.size), "rel_l2": float(np.linalg.norm(diff) / np.linalg.norm(theirs)),
            "worst_over_lr": float(np.abs(diff).max() / lr), "mean_abs_update_over_lr": float(np.abs(theirs).mean() / lr),
            "entries_off_by_more_than_1pct_lr": float(np.mean(np.abs(diff) > 0.01 * lr))}


def apply(items, delta_path):
    m = model()
    sd = {k: v.numpy() for k, v in m.state_dict().items()}   # numpy views of the model's tensors
    apply_delta(sd, delta_path)
    with torch.no_grad():
        return {"log_likelihoods": [float(-fe.nll(m, it["prompt"], it["answer"]).item()) for it in items]}


def saved(items, delta_path, saved_dir):
    import transformers as T
    m = T.AutoModelForCausalLM.from_pretrained(saved_dir, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        lls = [float(-fe.nll(m, it["prompt"], it["answer"]).item()) for it in items]
    tuned = load_file(os.path.join(saved_dir, "model.safetensors"))
    base = {k: v.numpy().astype(np.float32) for k, v in model().state_dict().items()}
    # The expected tensors: the base with the delta's rows written in (the README recipe).
    expected = {k: v.copy() for k, v in base.items() if k in tuned}
    apply_delta(expected, delta_path)
    changed_by_delta = sum(int(np.sum(expected[k] != base[k])) for k in expected)
    differing = sum(int(np.sum(tuned[k] != expected[k])) for k in expected)
    return {"log_likelihoods": lls, "tensors": len(tuned), "values": int(sum(v.size for v in tuned.values())),
            "missing": sorted(set(base) - set(tuned) - {"lm_head.weight"}), "values_set_by_delta": changed_by_delta,
            "values_differing_from_base_plus_delta": differing}


def saved_gguf(items, saved_dir, gguf_path):
    import transformers as T
    gdir, gname = os.path.split(os.path.realpath(gguf_path))
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    ours = T.AutoModelForCausalLM.from_pretrained(saved_dir, **kw).eval()
    theirs = T.AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, **kw).eval()
    with torch.no_grad():
        lls = [[float(-fe.nll(m, it["prompt"], it["answer"]).item()) for it in items] for m in (ours, theirs)]
    a, b = ours.state_dict(), theirs.state_dict()
    worst = max((float((a[k] - b[k]).abs().max()) for k in b if k in a), default=float("inf"))
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "head_dim", "hidden_activation", "rms_norm_eps", "query_pre_attn_scalar", "sliding_window",
              "layer_types", "vocab_size", "tie_word_embeddings", "final_logit_softcapping", "attn_logit_softcapping",
              "rope_parameters")
    ca, cb = ours.config.to_dict(), theirs.config.to_dict()
    return {"log_likelihoods": lls[0], "gguf_log_likelihoods": lls[1], "tensors": len(a), "missing": sorted(set(b) - set(a)),
            "worst_value_difference": worst, "config_differences": [f for f in fields if ca.get(f) != cb.get(f)],
            "model_type": ca.get("model_type"), "architectures": ca.get("architectures")}


def main():
    torch.set_num_threads(int(os.environ.get("OPENBLAS_NUM_THREADS", "1")))
    fa.float64_throughout()
    args = sys.argv[1:]
    items = json.load(open(args[1]))
    if args[0] == "train":
        opts = dict(zip(args[3::2], args[4::2]))
        out = train(items, args[2], float(opts["--lr"]), int(opts["--batch"]), int(opts["--seed"]), int(opts["--epochs"]))
    elif args[0] == "saved-gguf":
        out = saved_gguf(items, args[2], args[3])
    elif args[0] == "saved":
        out = saved(items, args[2], args[3])
    else:
        out = apply(items, args[2])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
