"""PyTorch CPU side of the attribution benchmark: the best exact float32 PyTorch program for the
shortcut that `cnl attribute` takes (SPEC Eq. 7 on SmolLM2, llama mlp.gate_proj output ω).

Only position p_m is patched and attention is causal, so everything before p_m is the clean run:

1. One clean teacher-forced pass over x ⊕ y[:-1] (no autograd) keeps, per layer, K (after RoPE)
   and V of every position, and at each p_m: the residual after the attention add (the FFN's
   input residual), ω̄ = gate_proj output and u = up_proj output.
2. Rows (m, l, n), α = n/S: a row starts at layer l's FFN with ω = α·ω̄ (a leaf),
   adds down_proj(silu(ω) ⊙ u) to the cached residual, runs layers l+1..L-1 for its one token
   against the cached K/V of positions < p_m plus its own recomputed key/value, then the final
   norm, the LM head, softmax and P_m = softmax(logits)[y_m]. Rows are sorted by l, so the rows
   active at layer k are a prefix and each layer is one tall GEMM over them; rows entering at k
   join the FFN GEMM of layer k. The gradient of Σ P (rows are independent, so it holds every
   row's dP/dω) goes through the LM head by hand (dP/dlogits = P (onehot_y - softmax), in place
   on the [R, V] logits) and then through the layers in one autograd backward; the weights do
   not require grad, so no weight gradients are formed.
   Rows with different m attend to different prefix lengths: `--attention gemm` (default)
   multiplies the grouped queries of all rows by the one shared clean K/V (a GEMM per kv head,
   no per-row copy of the cache) with a -inf mask past each row's p_m and adds the row's own
   key/value as one extra column; `--attention sdpa` expands the cache per row and calls
   F.scaled_dot_product_attention with a boolean mask (measured slower: 6.5 s against 5.1 s
   per SmolLM2 sample of 1200 rows at 1 thread).
3. score(l, j) = (1/Y) Σ_m ω̄_{m,l}[j] (1/S) Σ_n dP_m/dω_l[j] at α = n/S (float64 accumulation).

Rows run in chunks of at most --row-budget rows (memory). Timing per sample: time.perf_counter
around the clean pass + all rows (model loading excluded); the first sample is first run once
untimed (warm-up; --no-warmup skips it). `--dtype float64` runs the same program in float64
(to check it against the float64 reference of fixtures_attribution.py: ~1e-14). Prints one JSON
line per sample; --scores-out DIR writes
DIR/sample-<i>.safetensors with scores [L, J], p_clean and p_zero [Y, L] (float64)."""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Weights:
    """The HF model's weight tensors (detached, no grad), q/k/v and gate/up concatenated so each
    is one GEMM."""

    def __init__(self, model):
        cfg = model.config
        self.L = cfg.num_hidden_layers
        self.H = cfg.num_attention_heads
        self.G = cfg.num_key_value_heads
        self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.eps = cfg.rms_norm_eps
        self.J = cfg.intermediate_size
        self.rotary = model.model.rotary_emb
        self.embed = model.model.embed_tokens.weight.detach()
        self.norm = model.model.norm.weight.detach()
        self.head = model.lm_head.weight.detach()
        self.layers = []
        for layer in model.model.layers:
            a, f = layer.self_attn, layer.mlp
            assert a.q_proj.bias is None and a.k_proj.bias is None and a.o_proj.bias is None
            self.layers.append({
                "ln1": layer.input_layernorm.weight.detach(),
                "ln2": layer.post_attention_layernorm.weight.detach(),
                "qkv": torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach().contiguous(),
                "o": a.o_proj.weight.detach(),
                "gu": torch.cat([f.gate_proj.weight, f.up_proj.weight]).detach().contiguous(),
                "down": f.down_proj.weight.detach(),
            })


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, cos, sin):
    """x [..., heads, D], cos/sin broadcastable to [..., 1, D] (HF's rotate_half convention)."""
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


def clean_pass(W, z, positions):
    """Teacher-forced clean run over z [N]. Returns per layer K [G, N, D] (after RoPE) and
    V [G, N, D], and at `positions` [Y]: h_mid [L, Y, E] (residual after the attention add),
    omega [L, Y, J], up [L, Y, J]."""
    H, G, D, J = W.H, W.G, W.D, W.J
    N = z.shape[0]
    h = W.embed[z]                                                  # [N, E]
    cos, sin = W.rotary(h[None], torch.arange(N)[None])            # [1, N, D]
    cos, sin = cos[0][:, None, :], sin[0][:, None, :]              # [N, 1, D]
    Ks, Vs, hm, om, up = [], [], [], [], []
    for Wl in W.layers:
        qkv = rms(h, Wl["ln1"], W.eps) @ Wl["qkv"].T
        q, k, v = qkv.split([H * D, G * D, G * D], dim=-1)
        q = rope(q.view(N, H, D), cos, sin).transpose(0, 1)         # [H, N, D]
        k = rope(k.view(N, G, D), cos, sin).transpose(0, 1)         # [G, N, D]
        v = v.view(N, G, D).transpose(0, 1)
        att = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True, enable_gqa=True)[0]
        h = h + att.transpose(0, 1).reshape(N, H * D) @ Wl["o"].T
        gu = rms(h, Wl["ln2"], W.eps) @ Wl["gu"].T
        g, u = gu.split([J, J], dim=-1)
        Ks.append(k.contiguous())
        Vs.append(v.contiguous())
        hm.append(h[positions])
        om.append(g[positions])
        up.append(u[positions])
        h = h + (F.silu(g) * u) @ Wl["down"].T
    return Ks, Vs, torch.stack(hm), torch.stack(om), torch.stack(up)


def attend_gemm(q, k_own, v_own, Kc, Vc, mask, D):
    """q [B, H, D], own k/v [B, G, D]; shared clean cache Kc/Vc [G, T, D]; mask [B, T] additive
    (-inf at positions >= the row's p). Returns [B, H*D]."""
    B, H, _ = q.shape
    G, T, _ = Kc.shape
    rep = H // G
    qg = q.view(B, G, rep, D)
    scale = 1.0 / math.sqrt(D)
    qt = qg.permute(1, 0, 2, 3).reshape(G, B * rep, D)            # [G, B*rep, D]
    sc = torch.bmm(qt, Kc.transpose(1, 2)).view(G, B, rep, T)       # cached columns
    own = (qg * k_own[:, :, None, :]).sum(-1).permute(1, 0, 2)      # [G, B, rep]
    logits = torch.cat([sc + mask[None, :, None, :], own[..., None]], dim=-1) * scale
    pr = torch.softmax(logits, dim=-1)                               # [G, B, rep, T+1]
    out = torch.bmm(pr[..., :T].reshape(G, B * rep, T), Vc).view(G, B, rep, D)
    out = out + pr[..., T:] * v_own.permute(1, 0, 2)[:, :, None, :]
    return out.permute(1, 0, 2, 3).reshape(B, H * D)


def attend_sdpa(q, k_own, v_own, Kc, Vc, allowed, D):
    """Same as attend_gemm with the cache expanded per row and F.scaled_dot_product_attention;
    allowed [B, T] boolean."""
    B, H, _ = q.shape
    G, T, _ = Kc.shape
    K = torch.cat([Kc[None].expand(B, G, T, D), k_own[:, :, None, :]], dim=2)
    V = torch.cat([Vc[None].expand(B, G, T, D), v_own[:, :, None, :]], dim=2)
    m = torch.cat([allowed, torch.ones(B, 1, dtype=torch.bool)], dim=1)[:, None, None, :]
    out = F.scaled_dot_product_attention(q[:, :, None, :], K, V, attn_mask=m, enable_gqa=True)
    return out.reshape(B, H * D)


def run_rows(W, clean, rows_l, rows_m, rows_a, pos, targets, attention):
    """One chunk of rows sorted by l. Returns (dP/dω [R, J], P [R])."""
    Ks, Vs, hmid, omega, up, cos_p, sin_p = clean
    H, G, D, J = W.H, W.G, W.D, W.J
    R = rows_l.shape[0]
    T = Ks[0].shape[1]
    counts = torch.bincount(rows_l, minlength=W.L).tolist()
    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    first = int(rows_l[0])
    p_rows = pos[rows_m]                                              # [R]
    allowed = torch.arange(T)[None, :] < p_rows[:, None]              # [R, T]
    mask = torch.zeros(R, T, dtype=omega.dtype).masked_fill_(~allowed, float("-inf"))
    cos_r, sin_r = cos_p[rows_m][:, None, :], sin_p[rows_m][:, None, :]  # [R, 1, D]
    leaves = []                     # one leaf per entering layer (slices of one leaf would each
    h = None                        # zero-fill an [R, J] gradient in backward)
    for k in range(first, W.L):
        Wl = W.layers[k]
        a, b = starts[k], starts[k + 1]                               # rows entering at k: [a, b)
        idx = rows_m[a:b]
        leaf = (rows_a[a:b, None] * omega[k, idx]).requires_grad_(True) if b > a else None
        if leaf is not None:
            leaves.append(leaf)
        if a > 0:                                                     # rows already inside: full layer k
            qkv = rms(h, Wl["ln1"], W.eps) @ Wl["qkv"].T
            q, kk, v = qkv.split([H * D, G * D, G * D], dim=-1)
            q = rope(q.view(a, H, D), cos_r[:a], sin_r[:a])
            kk = rope(kk.view(a, G, D), cos_r[:a], sin_r[:a])
            v = v.view(a, G, D)
            if attention == "gemm":
                att = attend_gemm(q, kk, v, Ks[k], Vs[k], mask[:a], D)
            else:
                att = attend_sdpa(q, kk, v, Ks[k], Vs[k], allowed[:a], D)
            hm = h + att @ Wl["o"].T
            g, u = (rms(hm, Wl["ln2"], W.eps) @ Wl["gu"].T).split([J, J], dim=-1)
            if leaf is not None:
                g = torch.cat([g, leaf])
                u = torch.cat([u, up[k, idx]])
                hm = torch.cat([hm, hmid[k, idx]])
        else:
            g, u, hm = leaf, up[k, idx], hmid[k, idx]
        h = hm + (F.silu(g) * u) @ Wl["down"].T
    hn = rms(h, W.norm, W.eps)
    # The head by hand: P = softmax(logits)[y] and dP/dlogits = P (onehot_y - softmax), in place
    # on the [R, V] logits (autograd's softmax/logsumexp would make several [R, V] temporaries),
    # then one backward from hn. (torch.softmax in float32 on CPU is also ~3e-5 relative off here
    # over 49152 logits, measured; exp of x - max and a float32 sum are ~2e-7.)
    with torch.no_grad():
        e = hn @ W.head.T                                             # [R, V] logits
        e.sub_(e.amax(-1, keepdim=True)).exp_()
        tgt = targets[rows_m][:, None]
        total = e.sum(-1)
        P = e.gather(1, tgt)[:, 0] / total
        e.mul_((-P / total)[:, None])                                 # -P * softmax
        e.scatter_add_(1, tgt, P[:, None])                            # + P at y
        grad_hn = e @ W.head
    del e
    hn.backward(grad_hn)
    return torch.cat([lf.grad for lf in leaves]), P


def attribute(W, prompt, answer, S, budget, attention):
    L, J = W.L, W.J
    X, Y = len(prompt), len(answer)
    z = torch.tensor(prompt + answer[:-1])
    pos = torch.arange(Y) + X - 1                                     # p_m, 0-based, m = 0..Y-1
    targets = torch.tensor(answer)
    with torch.no_grad():
        Ks, Vs, hmid, omega, up = clean_pass(W, z, pos)
        cos, sin = W.rotary(hmid[:1], pos[None])                     # [1, Y, D]
        # cache positions < max p_m suffice (each row adds its own key/value at p_m)
        T = int(pos.max())
        Ks = [k[:, :T].contiguous() for k in Ks]
        Vs = [v[:, :T].contiguous() for v in Vs]
    clean = (Ks, Vs, hmid, omega, up, cos[0], sin[0])
    # all rows, sorted by l (then m, n)
    ll, mm, nn = torch.meshgrid(torch.arange(L), torch.arange(Y), torch.arange(S + 1), indexing="ij")
    ll, mm, nn = ll.reshape(-1), mm.reshape(-1), nn.reshape(-1)
    alpha = nn.to(omega.dtype) / S
    grads = torch.empty(L * Y * (S + 1), J, dtype=omega.dtype)
    probs = torch.empty(L * Y * (S + 1), dtype=omega.dtype)
    for c0 in range(0, ll.shape[0], budget):
        sl = slice(c0, c0 + budget)
        g, p = run_rows(W, clean, ll[sl], mm[sl], alpha[sl], pos, targets, attention)
        grads[sl], probs[sl] = g, p
    grads = grads.view(L, Y, S + 1, J).double()
    probs = probs.view(L, Y, S + 1).double()
    attr = omega.double() * grads.sum(2) / S         # [L, Y, J]
    scores = attr.mean(1)
    return scores, probs[:, :, S].T.contiguous(), probs[:, :, 0].T.contiguous()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", required=True, help="JSON list of {prompt: [...], answer: [...]}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=19, help="S: alpha = n/S, n = 0..S")
    ap.add_argument("--row-budget", type=int, default=600, help="at most this many rows per chunk")
    ap.add_argument("--attention", choices=["gemm", "sdpa"], default="gemm")
    ap.add_argument("--scores-out", help="directory for sample-<i>.safetensors")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="float64 only to check the program against the float64 reference")
    ap.add_argument("--no-warmup", action="store_true", help="time the first sample cold")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    from fixtures_attribution import smollm2_float64
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    model = smollm2_float64(gdir, gname).to(getattr(torch, a.dtype)).eval()
    assert model.config.model_type == "llama" and model.config.hidden_act == "silu"
    for prm in model.parameters():
        prm.requires_grad_(False)
    W = Weights(model)
    samples = json.load(open(a.samples))
    if a.scores_out:
        os.makedirs(a.scores_out, exist_ok=True)
    if samples and not a.no_warmup:
        attribute(W, samples[0]["prompt"], samples[0]["answer"], a.steps, a.row_budget, a.attention)
    for i, sample in enumerate(samples):
        prompt, answer = sample["prompt"], sample["answer"]
        t0 = time.perf_counter()
        scores, p1, p0 = attribute(W, prompt, answer, a.steps, a.row_budget, a.attention)
        dt = time.perf_counter() - t0
        if a.scores_out:
            from safetensors.numpy import save_file
            save_file({"scores": scores.numpy(), "p_clean": p1.numpy(), "p_zero": p0.numpy()},
                      os.path.join(a.scores_out, f"sample-{i}.safetensors"))
        Y = len(answer)
        print(json.dumps({"prompt_tokens": len(prompt), "answer_tokens": Y,
                          "rows": Y * W.L * (a.steps + 1), "seconds": dt, "threads": a.threads,
                          "row_budget": a.row_budget, "attention": a.attention,
                          "warmup": not a.no_warmup, "dtype": a.dtype, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
