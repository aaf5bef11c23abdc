#!/usr/bin/env python3
"""PyTorch peer of the STE trainer's throughput benchmark (packages/ste-trainer/scripts/throughput.mjs
--compare-torch runs it). Never a dependency of the project or its tests: Debian's python3-torch (1.13, CPU),
with OpenBLAS put on LD_LIBRARY_PATH by the caller (docs: ../shared/docs/toolchain.md).

What it times is the same training step as the trainer's dense KD run: a llama2.c-shaped Llama (RMSNorm,
RoPE on (2i, 2i+1) pairs, grouped-query causal attention, SwiGLU, tied classifier), a frozen float teacher of
the same shape and a student whose linears are trainable (embedding, norms and classifier frozen), on
windows of seq + 1 tokens at random offsets of the calibration token stream; loss = KL(teacher || student)
on the logits (mean over positions) + 10 x sum over layers of the hidden-state MSE; AdamW (lr 1e-3,
betas 0.9/0.999, eps 1e-8, no decay), gradient clipping at global norm 1. The weights are random (std 0.02,
norms 1) with the student starting as the teacher plus small noise: throughput does not depend on their
values, and reading the Q8_0 checkpoint here would duplicate the project's reader.

Prints one JSON line: tokens_per_s (timed steps / their wall time), cpu_ms_per_step, threads.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
for name, default in [('dim', 192), ('hidden', 512), ('layers', 6), ('heads', 6), ('kv-heads', 2), ('vocab', 4096),
                      ('batch', 4), ('seq', 128), ('steps', 3), ('warmup', 1), ('threads', 1), ('seed', 1)]:
    p.add_argument('--' + name, type=int, default=default)
p.add_argument('--rope-theta', type=float, default=10000.0)
p.add_argument('--norm-eps', type=float, default=1e-5)
p.add_argument('--loss', choices=['kd', 'ce'], default='kd')
p.add_argument('--tokens', help='int32 calibration token stream (little-endian); random tokens without it')
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
hs = a.dim // a.heads
group = a.heads // a.kv_heads


class Llama(torch.nn.Module):
    def __init__(self, emb):
        super().__init__()
        d, h, kv = a.dim, a.hidden, a.kv_heads * hs
        self.emb = emb  # shared, frozen (tied classifier)
        lin = lambda o, i: torch.nn.Parameter(torch.randn(o, i) * 0.02)
        self.wq = torch.nn.ParameterList([lin(d, d) for _ in range(a.layers)])
        self.wk = torch.nn.ParameterList([lin(kv, d) for _ in range(a.layers)])
        self.wv = torch.nn.ParameterList([lin(kv, d) for _ in range(a.layers)])
        self.wo = torch.nn.ParameterList([lin(d, d) for _ in range(a.layers)])
        self.wg = torch.nn.ParameterList([lin(h, d) for _ in range(a.layers)])
        self.wu = torch.nn.ParameterList([lin(h, d) for _ in range(a.layers)])
        self.wd = torch.nn.ParameterList([lin(d, h) for _ in range(a.layers)])
        self.norms = torch.ones(2 * a.layers + 1, d)  # frozen
        freqs = 1.0 / (a.rope_theta ** (torch.arange(0, hs, 2).float() / hs))
        ang = torch.outer(torch.arange(a.seq).float(), freqs)
        self.cos, self.sin = ang.cos(), ang.sin()
        self.mask = torch.full((a.seq, a.seq), float('-inf')).triu(1)

    def rms(self, x, i):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + a.norm_eps) * self.norms[i]

    def rope(self, x):  # x [B, L, H, hs], pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = self.cos[None, :, None, :], self.sin[None, :, None, :]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)

    def forward(self, tok):
        B, L = tok.shape
        x = self.emb[tok]
        hidden = []
        for l in range(a.layers):
            h = self.rms(x, 2 * l)
            q = self.rope((h @ self.wq[l].t()).view(B, L, a.heads, hs)).transpose(1, 2)
            k = self.rope((h @ self.wk[l].t()).view(B, L, a.kv_heads, hs)).transpose(1, 2)
            v = (h @ self.wv[l].t()).view(B, L, a.kv_heads, hs).transpose(1, 2)
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hs) + self.mask[:L, :L], dim=-1)
            o = (att @ v).transpose(1, 2).reshape(B, L, a.dim)
            x = x + o @ self.wo[l].t()
            f = self.rms(x, 2 * l + 1)
            x = x + (F.silu(f @ self.wg[l].t()) * (f @ self.wu[l].t())) @ self.wd[l].t()
            hidden.append(x)
        return self.rms(x, 2 * a.layers) @ self.emb.t(), hidden


emb = torch.randn(a.vocab, a.dim) * 0.02
teacher = Llama(emb)
for prm in teacher.parameters():
    prm.requires_grad_(False)
student = Llama(emb)
with torch.no_grad():
    for ps, pt in zip(student.parameters(), teacher.parameters()):
        ps.copy_(pt + 0.002 * torch.randn_like(pt))
opt = torch.optim.AdamW(student.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

if a.tokens:
    import array
    stream = array.array('i')
    with open(a.tokens, 'rb') as fh:
        stream.frombytes(fh.read())
    stream = torch.tensor(stream, dtype=torch.long)
else:
    stream = torch.randint(0, a.vocab, (100000,))
gen = torch.Generator().manual_seed(a.seed)


def step():
    starts = torch.randint(0, len(stream) - a.seq - 1, (a.batch,), generator=gen)
    win = torch.stack([stream[s:s + a.seq + 1] for s in starts.tolist()])
    inp, tgt = win[:, :-1], win[:, 1:]
    logits, hid = student(inp)
    if a.loss == 'kd':
        with torch.no_grad():
            tlogits, thid = teacher(inp)
        lp_s = F.log_softmax(logits, -1).view(-1, a.vocab)
        lp_t = F.log_softmax(tlogits, -1).view(-1, a.vocab)
        loss = F.kl_div(lp_s, lp_t, log_target=True, reduction='batchmean')
        loss = loss + 10 * sum(F.mse_loss(h, t) for h, t in zip(hid, thid))
    else:
        loss = F.cross_entropy(logits.view(-1, a.vocab), tgt.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    opt.step()


for _ in range(a.warmup):
    step()
c0, w0 = time.process_time(), time.perf_counter()
for _ in range(a.steps):
    step()
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
print(json.dumps({'tokens_per_s': a.batch * a.seq * a.steps / wall, 'cpu_ms_per_step': 1000 * cpu / a.steps,
                  'threads': torch.get_num_threads(), 'torch': torch.__version__}))
