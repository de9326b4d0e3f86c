"""Float64 reference of SPEC's Eq. 7 with HF transformers' own modules, hooks and autograd.

For a sample (prompt x, answer y), answer token m, layer l and n = 0..S, the hooked tensor
(llama and gemma3 mlp.gate_proj, gpt2 mlp.c_fc, gptj mlp.fc_in output) at position p_m = X + m - 2 is
replaced by alpha * its clean value (alpha = n/S), P = softmax(logits[p_m])[y_m], and autograd
gives dP/domega there. Rows of all (l, n) for one m run as one batch: each layer's hook scales
only the rows that patch that layer.

- Random-weight models: every row is the full sequence z_m (no cache): this also checks that the
  clean prefix may be cached.
- SmolLM2 (GSM8K test rows SMOLLM2_ROWS with the `cnl locate` template, final answers): the
  clean prefix z_m[:p_m] runs once and HF's own KV cache carries it (a float64 full-sequence run
  would take hours per sample). They are the two cheapest of fixtures_locate.py's samples, which
  reuses their scores.

Also: central finite differences (float64) of P at a few (m, l, j, alpha), for the gradient
check. Output: .assets/oracle/attribution/<name>/reference.safetensors
"""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers as T  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

TOPIC = "attribution"


def float64_throughout():
    """HF keeps three pieces in float32 even in a float64 model (LlamaRMSNorm, llama's eager
    softmax, GPT-J's attention scores). Float32 rounding there makes P piecewise-flat at 1e-7
    relative, which a float64 reference and its finite differences must not have: replace those
    three with the same formulas in the input dtype. Rotary cos/sin stay float32 constants, as in
    HF and in cnl (a constant, not noise)."""
    from transformers.models.gptj import modeling_gptj
    from transformers.models.llama import modeling_llama

    def rms_forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))
    modeling_llama.LlamaRMSNorm.forward = rms_forward

    plain_softmax = torch.nn.functional.softmax

    def softmax(x, dim=None, dtype=None, **kw):
        if dtype == torch.float32 and x.dtype == torch.float64:
            dtype = torch.float64
        return plain_softmax(x, dim=dim, dtype=dtype, **kw)
    modeling_llama.nn.functional.softmax = softmax

    def gptj_attn(self, query, key, value, attention_mask=None):
        w = torch.matmul(query, key.transpose(-1, -2)) / torch.as_tensor(self.scale_attn, dtype=query.dtype)
        if attention_mask is not None:
            w = w + attention_mask
        w = plain_softmax(w, dim=-1).to(value.dtype)
        return torch.matmul(w, value), w
    modeling_gptj.GPTJAttention._attn = gptj_attn
OUT = os.path.join(common.ORACLE, TOPIC)
S = 19
SMOLLM2_ROWS = [1, 18]     # one-digit answers (2 tokens) with the shortest questions: ~35 s each


def hooked_modules(model):
    t = model.config.model_type
    if t in ("llama", "gemma3_text"):
        return [layer.mlp.gate_proj for layer in model.model.layers]
    if t == "gpt2":
        return [block.mlp.c_fc for block in model.transformer.h]
    if t == "gptj":
        return [block.mlp.fc_in for block in model.transformer.h]
    raise ValueError(t)


class Patch:
    """Forward hooks that set omega_l[p] := alpha_r * clean omega_l[p] for the rows r patching l,
    keeping each scaled tensor (a leaf) so its gradient can be read after backward."""

    def __init__(self, model, rows_of_layer, alphas, position):
        self.leaves = {}
        self.handles = []
        for l, mod in enumerate(hooked_modules(model)):
            idx = rows_of_layer.get(l)
            if idx is None:
                continue
            self.handles.append(mod.register_forward_hook(self._hook(l, idx, alphas, position)))

    def _hook(self, l, idx, alphas, position):
        def fn(module, inputs, out):
            clean = out[idx, position, :].detach()
            leaf = (alphas[idx, None] * clean).requires_grad_(True)
            self.leaves[l] = (leaf, clean)
            out = out.clone()
            out[idx, position, :] = leaf
            return out
        return fn

    def remove(self):
        for h in self.handles:
            h.remove()


def weights(kind):
    n = np.arange(S + 1)
    if kind == "paper":
        return np.full(S + 1, 1.0 / S)
    if kind == "points":
        return np.full(S + 1, 1.0 / (S + 1))
    w = np.full(S + 1, 1.0 / S)
    w[0] = w[S] = 0.5 / S
    return w


def attribute(model, prompt, answer, cached, layers_per_batch=6):
    """scores [L, J] per normalization, P(1) and P(0) per (m, l), the raw gradients
    [Y, L, S+1, J] and the clean omega [Y, L, J]. Rows (l, n) run in batches of
    `layers_per_batch` layers: all 600 rows of SmolLM2 at once, in float64 with a replicated
    KV cache and autograd state, need ~23 GB (seen: the OOM killer); 6 layers need ~5 GB."""
    L = model.config.num_hidden_layers
    X, Y = len(prompt), len(answer)
    z = torch.tensor([prompt + answer[:-1]])
    grads = clean = None
    p1 = np.zeros((Y, L))
    p0 = np.zeros((Y, L))
    for m in range(Y):
        p = X + m - 1                     # 0-based position predicting answer[m]
        if cached:
            with torch.no_grad():
                prefix = model(z[:, :p], use_cache=True).past_key_values if p > 0 else None
        for first in range(0, L, layers_per_batch):
            group = range(first, min(L, first + layers_per_batch))
            rows = [(l, n) for l in group for n in range(S + 1)]
            B = len(rows)
            alphas = torch.tensor([n / S for (_, n) in rows], dtype=torch.float64)
            rows_of_layer = {l: torch.tensor([i for i, (ll, _) in enumerate(rows) if ll == l]) for l in group}
            if cached:
                cache = copy.deepcopy(prefix)
                cache.batch_repeat_interleave(B)
                ids = z[:, p:p + 1].repeat(B, 1)
                position = 0
            else:
                cache = None
                ids = z[:, :p + 1].repeat(B, 1)
                position = p
            patch = Patch(model, rows_of_layer, alphas, position)
            try:
                out = model(ids, past_key_values=cache, use_cache=cached)
                probs = torch.softmax(out.logits[:, position, :], dim=-1)[:, answer[m]]
                probs.sum().backward()
            finally:
                patch.remove()
            if grads is None:
                J = patch.leaves[first][0].shape[-1]
                grads = np.zeros((Y, L, S + 1, J))
                clean = np.zeros((Y, L, J))
            for l in group:
                leaf, cl = patch.leaves[l]
                grads[m, l] = leaf.grad.detach().numpy()
                clean[m, l] = cl[0].numpy()
                idx = rows_of_layer[l]
                p1[m, l] = probs[idx[S]].item()
                p0[m, l] = probs[idx[0]].item()
            model.zero_grad(set_to_none=True)
            del out, probs, cache, patch
    scores = {}
    for kind in ("paper", "points", "trapezoid"):
        w = weights(kind)
        attr = clean * np.einsum("n,ylnj->ylj", w, grads)      # [Y, L, J]
        scores[kind] = attr.mean(axis=0)
    return scores, p1, p0, grads, clean


def finite_differences(model, prompt, answer, points, eps=1e-2):
    """Central differences (float64) of P_m w.r.t. omega_l[j] at omega_l[p] = alpha * clean,
    full sequence, for points = [(m, l, n, j)], with one Richardson step (steps eps and eps/2:
    truncation error O(eps^4))."""
    coarse = _central(model, prompt, answer, points, eps)
    fine = _central(model, prompt, answer, points, eps / 2)
    return (4 * fine - coarse) / 3


def _central(model, prompt, answer, points, eps):
    L = model.config.num_hidden_layers
    X = len(prompt)
    z = torch.tensor([prompt + answer[:-1]])
    out = []
    for (m, l, n, j) in points:
        p = X + m - 1
        vals = []
        for sign in (+1, -1):
            def fn(module, inputs, o, l=l):
                o = o.clone()
                o[:, p, :] = (n / S) * o[:, p, :]
                o[:, p, j] += sign * eps
                return o
            h = hooked_modules(model)[l].register_forward_hook(fn)
            with torch.no_grad():
                # Only position p is read: a large vocabulary's head over every position would
                # dominate (Gemma's 262,144 words: ~30 GFLOP per pass in float64).
                logits = model(z[:, :p + 1], logits_to_keep=1).logits[0, -1]
            h.remove()
            vals.append(torch.softmax(logits, -1)[answer[m]].item())
        out.append((vals[0] - vals[1]) / (2 * eps))
    return np.array(out)


def run(name, model, prompt, answer, cached, rng, fd_count):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    scores, p1, p0, grads, clean = attribute(model, prompt, answer, cached)
    fd_points = fd_points_from(grads, rng, fd_count)
    fd = finite_differences(model, prompt, answer, fd_points)
    pts = np.array(fd_points, dtype=np.int64)
    autograd = np.array([grads[m, l, n, j] for (m, l, n, j) in fd_points])
    save_file({
        "prompt": np.array(prompt, dtype=np.int64), "answer": np.array(answer, dtype=np.int64),
        "scores_paper": scores["paper"], "scores_points": scores["points"], "scores_trapezoid": scores["trapezoid"],
        "p_clean": p1, "p_zero": p0, "fd_points": pts, "fd_gradient": fd, "autograd_gradient": autograd,
    }, os.path.join(d, "reference.safetensors"))
    rel = np.abs(fd - autograd) / np.maximum(np.abs(fd), 1e-12)
    common.log(f"  {name}: X={len(prompt)} Y={len(answer)} max|score|={np.abs(scores['paper']).max():.3e} "
               f"autograd vs FD max rel {rel.max():.2e}")


def fd_points_from(grads, rng, k=6):
    """(m, l, n, j) at random (m, l, n) with j among the 20 largest |dP/domega| there (a random
    neuron's gradient is often ~0, where a relative error says nothing)."""
    Y, L = grads.shape[:2]
    pts = []
    for _ in range(k):
        m, l, n = int(rng.integers(Y)), int(rng.integers(L)), int(rng.integers(S + 1))
        top = np.argsort(-np.abs(grads[m, l, n]))[:20]
        pts.append((m, l, n, int(rng.choice(top))))
    return pts


def locate_sample_tokens(tok, row):
    """A GSM8K row as `cnl locate --config configs/gsm8k-final.yaml` tokenizes it: prompt
    "Question: <question>\nAnswer:" with the tokenizer's special tokens, answer " <final answer>"
    (after the last "####", stripped) without them."""
    prompt = tok("Question: " + row["question"] + "\nAnswer:")["input_ids"]
    answer = tok(" " + row["answer"].split("####")[-1].strip(), add_special_tokens=False)["input_ids"]
    return [int(t) for t in prompt], [int(t) for t in answer]


def smollm2_float64(gdir, gname):
    """SmolLM2 as a plain float64 LlamaForCausalLM: gguf-py dequantizes every tensor, q/k rows
    are un-permuted back to HF's layout (llama.cpp's converter interleaves them). transformers'
    own GGUF path keeps weights packed and computes in float32, which is no float64 reference."""
    import gguf
    cfg = T.AutoConfig.from_pretrained(gdir, gguf_file=gname)
    cfg._attn_implementation = "eager"
    reader = gguf.GGUFReader(os.path.join(gdir, gname))
    H, G = cfg.num_attention_heads, cfg.num_key_value_heads

    def unpermute(w, heads):
        out, inp = w.shape
        return w.reshape(heads, out // heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)

    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    sd = {}
    for t in reader.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(list(reversed([int(x) for x in t.shape])))
        if t.name == "token_embd.weight":
            sd["model.embed_tokens.weight"] = a
        elif t.name == "output_norm.weight":
            sd["model.norm.weight"] = a
        elif t.name == "output.weight":
            sd["lm_head.weight"] = a
        else:
            _, i, kind, _ = t.name.split(".")
            if kind == "attn_q":
                a = unpermute(a, H)
            elif kind == "attn_k":
                a = unpermute(a, G)
            sd[f"model.layers.{i}.{names[kind]}.weight"] = a
    model = T.LlamaForCausalLM(cfg).double()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.tie_weights()
    return model.eval()


def main():
    if common.stamp_ok(TOPIC, __file__):
        common.log("attribution: up to date")
        return
    torch.set_grad_enabled(True)
    float64_throughout()
    rng = np.random.default_rng(7)
    for name in ("gpt2-f32", "gptj-f32", "llama-f32"):
        mdir = os.path.join(common.ORACLE, "models", name)
        model = T.AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float64, attn_implementation="eager").eval()
        V, L = model.config.vocab_size, model.config.num_hidden_layers
        prompt = [int(t) for t in rng.integers(0, V, 11)]
        answer = [int(t) for t in rng.integers(0, V, 3)]
        run(name, model, prompt, answer, cached=False, rng=rng, fd_count=6)

    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    tok = T.AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = smollm2_float64(gdir, gname)
    samples = []
    rows = common.gsm8k_rows(max(SMOLLM2_ROWS) + 1)
    for i, r in enumerate(rows[k] for k in SMOLLM2_ROWS):
        prompt, answer = locate_sample_tokens(tok, r)
        run(f"smollm2-{i}", model, prompt, answer, cached=True, rng=rng, fd_count=4)
        samples.append({"prompt": prompt, "answer": answer})
    with open(os.path.join(OUT, "smollm2-samples.json"), "w") as f:
        json.dump(samples, f)
    common.write_stamp(TOPIC, __file__)


if __name__ == "__main__":
    main()
