"""PyTorch CPU comparator for `cnl bench enhance`: the same training in float32 PyTorch on the same
samples, neurons and threads, the way a PyTorch user would write it (HF LlamaForCausalLM, batches
right-padded with an attention mask, the mean over samples of each sample's mean answer-token NLL,
autograd with requires_grad on the chosen layers' gate_proj weights only, the gradient rows of the
chosen neurons fed to torch.optim.Adam over one leaf of those rows).

  bench_enhance_torch.py PLAN.json --threads T    (PLAN.json from cnl bench enhance --write-plan)
Prints JSON: seconds, tokens, tokens_per_second, mean_loss, torch version.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import fixtures_attribution as fa  # noqa: E402

import torch  # noqa: E402


def main():
    plan = json.load(open(sys.argv[1]))
    threads = int(sys.argv[sys.argv.index("--threads") + 1])
    torch.set_num_threads(threads)
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    m = fa.smollm2_float64(gdir, gname).float().eval()
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)
    for p in m.parameters():
        p.requires_grad_(False)
    J = m.config.intermediate_size
    rows = [(n // J, n % J) for n in plan["neurons"]]
    layers = sorted({l for l, _ in rows})
    for l in layers:
        m.model.layers[l].mlp.gate_proj.weight.requires_grad_(True)
    weights = [m.model.layers[l].mlp.gate_proj.weight for l, _ in rows]
    with torch.no_grad():
        leaf = torch.nn.Parameter(torch.stack([w[j].detach().clone() for w, (_, j) in zip(weights, rows)]))
    opt = torch.optim.Adam([leaf], lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    items, B = plan["items"], plan["batch_size"]
    tokens = sum(len(it["prompt"]) + len(it["answer"]) - 1 for it in items)
    losses = []
    start = time.perf_counter()
    for b in range(0, len(items), B):
        batch = items[b:b + B]
        seqs = [it["prompt"] + it["answer"][:-1] for it in batch]
        T = max(len(s) for s in seqs)
        ids = torch.zeros(len(batch), T, dtype=torch.long)
        mask = torch.zeros(len(batch), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        for l in layers:
            m.model.layers[l].mlp.gate_proj.weight.grad = None
        logits = m(input_ids=ids, attention_mask=mask).logits
        loss = 0
        for i, it in enumerate(batch):
            X, Y = len(it["prompt"]), len(it["answer"])
            logp = torch.log_softmax(logits[i, X - 1:X - 1 + Y], dim=-1)
            loss = loss - logp[torch.arange(Y), torch.tensor(it["answer"])].mean()
        loss = loss / len(batch)
        loss.backward()
        leaf.grad = torch.stack([w.grad[j] for w, (_, j) in zip(weights, rows)])
        opt.step()
        with torch.no_grad():
            for k, (w, (_, j)) in enumerate(zip(weights, rows)):
                w[j] = leaf[k]
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
                      "mean_loss": sum(losses) / len(losses), "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
