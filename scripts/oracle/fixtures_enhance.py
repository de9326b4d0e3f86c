"""Enhance oracle: the mean answer NLL and its gradient on chosen neurons' slices, by float64
PyTorch autograd through HF's own modules (SPEC "Table 2: enhance").

For a sample (prompt, answer) the model reads prompt + answer[:-1] teacher-forced; the loss is the
mean over answer tokens m of -log softmax(logits[X - 1 + m])[answer[m]]. Gradients are taken on the
full weights and then cut to the slices: row j of W_in (and its bias), row j of W_up (and its
bias), column j of W_out, for each chosen neuron (l, j). Also a central difference (float64,
Richardson) of the loss in a few W_in entries.

On SmolLM2 also three steps of torch.optim.Adam (lr 1e-4, the rest as SPEC) on the slices alone,
the gradient recomputed at every step: the slice values before and after, in the order W_in rows,
W_in biases, W_up rows, W_up biases, W_out columns.

Models: the random gpt2/gptj/llama of fixtures_models.py, the random gemma3 of fixtures_gemma3.py,
and SmolLM2 in float64 (fixtures_attribution's loader) on GSM8K test row 1 with the locate template.
Output: .assets/oracle/enhance/<name>/reference.safetensors
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import fixtures_attribution as fa  # noqa: E402
import fixtures_gemma3 as fg  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers as T  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

TOPIC = "enhance"
OUT = os.path.join(common.ORACLE, TOPIC)


def ffn_modules(model, l):
    """(W_in module, W_up module or None, W_out module, conv1d?) of layer l."""
    t = model.config.model_type
    if t in ("llama", "gemma3_text"):
        mlp = model.model.layers[l].mlp
        return mlp.gate_proj, mlp.up_proj, mlp.down_proj, False
    if t == "gpt2":
        mlp = model.transformer.h[l].mlp
        return mlp.c_fc, None, mlp.c_proj, True
    if t == "gptj":
        mlp = model.transformer.h[l].mlp
        return mlp.fc_in, None, mlp.fc_out, False
    raise ValueError(t)


def nll(model, prompt, answer):
    z = torch.tensor([prompt + answer[:-1]])
    logits = model(z).logits[0]
    X = len(prompt)
    logp = torch.log_softmax(logits[X - 1:X - 1 + len(answer)], dim=-1)
    return -logp[torch.arange(len(answer)), torch.tensor(answer)].mean()


def slices(model, prompt, answer, neurons, J):
    model.zero_grad(set_to_none=True)
    loss = nll(model, prompt, answer)
    loss.backward()
    rec = {"in_weight": [], "in_bias": [], "up_weight": [], "up_bias": [], "out_weight": []}
    for n in neurons:
        l, j = divmod(n, J)
        w_in, w_up, w_out, conv = ffn_modules(model, l)
        rec["in_weight"].append((w_in.weight.grad[:, j] if conv else w_in.weight.grad[j]).numpy())
        if w_in.bias is not None:
            rec["in_bias"].append(w_in.bias.grad[j].item())
        if w_up is not None:
            rec["up_weight"].append(w_up.weight.grad[j].numpy())
            if w_up.bias is not None:
                rec["up_bias"].append(w_up.bias.grad[j].item())
        rec["out_weight"].append((w_out.weight.grad[j] if conv else w_out.weight.grad[:, j]).numpy())
    out = {k: np.array(v, dtype=np.float64) for k, v in rec.items() if len(v)}
    out["loss"] = np.array([loss.item()])
    return out


def slice_views(model, neurons, J):
    """(tensor, index) of every slice element, in the flattened order."""
    blocks = {"in_weight": [], "in_bias": [], "up_weight": [], "up_bias": [], "out_weight": []}
    for n in neurons:
        l, j = divmod(n, J)
        w_in, w_up, w_out, conv = ffn_modules(model, l)
        D = w_in.weight.shape[0] if conv else w_in.weight.shape[1]
        blocks["in_weight"] += [(w_in.weight, (i, j) if conv else (j, i)) for i in range(D)]
        if w_in.bias is not None:
            blocks["in_bias"].append((w_in.bias, (j,)))
        if w_up is not None:
            blocks["up_weight"] += [(w_up.weight, (j, i)) for i in range(D)]
            if w_up.bias is not None:
                blocks["up_bias"].append((w_up.bias, (j,)))
        blocks["out_weight"] += [(w_out.weight, (j, i) if conv else (i, j)) for i in range(D)]
    return [v for k in ("in_weight", "in_bias", "up_weight", "up_bias", "out_weight") for v in blocks[k]]


def adam_steps(model, prompt, answer, neurons, J, steps=3, lr=1e-4):
    """torch.optim.Adam on one leaf holding the slice values; before each step they are written
    into the model, the loss is taken, and the slices' gradients become the leaf's gradient."""
    views = slice_views(model, neurons, J)
    with torch.no_grad():
        leaf = torch.nn.Parameter(torch.tensor([t[i].item() for t, i in views], dtype=torch.float64))
    before = leaf.detach().clone().numpy()
    opt = torch.optim.Adam([leaf], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    for _ in range(steps):
        with torch.no_grad():
            for (t, i), v in zip(views, leaf.detach()):
                t[i] = v
        model.zero_grad(set_to_none=True)
        nll(model, prompt, answer).backward()
        leaf.grad = torch.tensor([t.grad[i].item() for t, i in views], dtype=torch.float64)
        opt.step()
    with torch.no_grad():
        for (t, i), v in zip(views, leaf.detach()):
            t[i] = v
    return before, leaf.detach().numpy()


def finite_differences(model, prompt, answer, points, J, eps=1e-3):
    """d loss / d W_in[j, i] at points (k, i) of the neuron list, central, one Richardson step."""
    def central(n, i, h):
        l, j = divmod(n, J)
        w_in, _, _, conv = ffn_modules(model, l)
        w = w_in.weight
        idx = (i, j) if conv else (j, i)
        vals = []
        with torch.no_grad():
            keep = w[idx].item()
            for sign in (+1, -1):
                w[idx] = keep + sign * h
                vals.append(nll(model, prompt, answer).item())
            w[idx] = keep
        return (vals[0] - vals[1]) / (2 * h)
    return np.array([(4 * central(n, i, eps / 2) - central(n, i, eps)) / 3 for (n, i) in points])


def run(name, model, prompt, answer, rng, count):
    L, J = model.config.num_hidden_layers, ffn_modules(model, 0)[0].weight.shape[1 if ffn_modules(model, 0)[3] else 0]
    neurons = sorted({int(x) for x in rng.choice(L * J, size=count, replace=False)})
    rec = slices(model, prompt, answer, neurons, J)
    points = []
    for _ in range(3):
        k = int(rng.integers(len(neurons)))
        g = rec["in_weight"][k]
        i = int(rng.choice(np.argsort(-np.abs(g))[:10]))
        points.append((k, i))
    fd = finite_differences(model, prompt, answer, [(neurons[k], i) for (k, i) in points], J)
    rec.update({"prompt": np.array(prompt, dtype=np.int64), "answer": np.array(answer, dtype=np.int64),
                "neurons": np.array(neurons, dtype=np.int64), "fd_points": np.array(points, dtype=np.int64), "fd_in_weight": fd})
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    save_file(rec, os.path.join(d, "reference.safetensors"))
    auto = np.array([rec["in_weight"][k][i] for (k, i) in points])
    common.log(f"  {name}: X={len(prompt)} Y={len(answer)} {len(neurons)} neurons, loss {rec['loss'][0]:.6f}, "
               f"autograd vs FD max rel {np.max(np.abs(auto - fd) / np.abs(fd)):.2e}")


def main():
    if common.stamp_ok(TOPIC, __file__):
        common.log("enhance: up to date")
        return
    os.makedirs(OUT, exist_ok=True)
    torch.set_grad_enabled(True)
    fa.float64_throughout()
    fg.gemma_in_float64()
    rng = np.random.default_rng(5)
    dirs = [(n, os.path.join(common.ORACLE, "models", n)) for n in ("gpt2-f32", "gptj-f32", "llama-f32")]
    dirs.append(("gemma3-random", os.path.join(common.ORACLE, "gemma3", "random")))
    for name, mdir in dirs:
        model = T.AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float64, attn_implementation="eager").eval()
        V = model.config.vocab_size
        prompt = [int(t) for t in rng.integers(0, V, 13)]
        answer = [int(t) for t in rng.integers(0, V, 3)]
        run(name, model, prompt, answer, rng, count=7)
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    tok = T.AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = fa.smollm2_float64(gdir, gname)
    prompt, answer = fa.locate_sample_tokens(tok, common.gsm8k_rows(2)[1])
    run("smollm2", model, prompt, answer, rng, count=12)
    from safetensors.numpy import load_file
    path = os.path.join(OUT, "smollm2", "reference.safetensors")
    rec = load_file(path)
    before, after = adam_steps(model, prompt, answer, [int(n) for n in rec["neurons"]], model.config.intermediate_size)
    rec.update({"adam_before": before, "adam_after": after})
    save_file(rec, path)
    common.log(f"  smollm2 Adam: 3 steps on {len(before)} slice values, max |Δ| {np.abs(after - before).max():.3e}")
    common.write_stamp(TOPIC, __file__)


if __name__ == "__main__":
    main()
