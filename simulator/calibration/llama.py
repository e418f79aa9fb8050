"""A Llama-family decoder in plain PyTorch with a preallocated KV cache, for timing real runs.

Weights are random (latency does not depend on their values) and made on the device itself.
`forward(tokens, start)` writes the keys and values of `tokens` at positions start.. in the
cache and attends causally to everything before; rolling the cache back is moving `start`
back, as real engines crop their caches. `forward_at(tokens, starts, span)` is the same
computation with every shape fixed ahead (per-row start positions as a tensor, attention over
the first `span` cache slots with a mask), so that a CUDA graph can capture it once and replay
it at any position: what serving engines run for decoding (graphs.py).

For greedy speculative decoding to accept anything, draft and target must agree often. Models
built with the same `bigram_seed` share a token-to-next-token map: the embedding and the LM
head are tied so that, through the residual stream, token t votes for next token pi(t);
the decoder blocks add noise of size `noise` on top. Small noise, high agreement.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..catalog import Architecture


def _normal(shape, std, gen, device, dtype):
    return torch.empty(shape, device=device, dtype=torch.float32).normal_(0.0, std, generator=gen).to(dtype)


class Llama(torch.nn.Module):
    def __init__(self, arch: Architecture, *, max_batch: int, max_len: int, device="cpu",
                 dtype=torch.float32, seed: int = 0, bigram_seed: int = 1234, noise: float = 6.5):
        super().__init__()
        self.arch, self.device, self.dtype = arch, torch.device(device), dtype
        h, hd, kv, V = arch.hidden, arch.head_dim, arch.kv_heads, arch.vocab
        gen = torch.Generator(device=self.device).manual_seed(seed)
        mk = lambda shape, std: _normal(shape, std, gen, self.device, dtype)  # noqa: E731
        # token t embeds as e_t; the LM head scores next token pi(t) by e_t, so the residual
        # stream of t points at pi(t): the shared "bigram" both draft and target follow
        perm = torch.randperm(V, generator=torch.Generator().manual_seed(bigram_seed)).to(self.device)
        self.embed = mk((V, h), 1.0)
        head = torch.empty((h, V), device=self.device, dtype=dtype)
        head[:, perm] = self.embed.T
        self.lm_head = head / math.sqrt(h)
        qkv = (arch.heads + 2 * kv) * hd
        noise *= math.sqrt(h / 768)  # the bigram's margin grows as sqrt(hidden): keep agreement comparable
        self.layers = [dict(
            wqkv=mk((h, qkv), 1 / math.sqrt(h)),
            wo=mk((arch.heads * hd, h), noise / math.sqrt(arch.heads * hd * arch.layers)),
            wgu=mk((h, 2 * arch.ffn), 1 / math.sqrt(h)),
            wdown=mk((arch.ffn, h), noise / math.sqrt(arch.ffn * arch.layers)),
        ) for _ in range(arch.layers)]
        self.cache = torch.zeros((arch.layers, 2, max_batch, kv, max_len, hd), device=self.device, dtype=dtype)
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=self.device, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(max_len, device=self.device, dtype=torch.float32), inv)
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)
        self.max_len = max_len

    @staticmethod
    def _norm(x):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)

    @staticmethod
    def _rotate(x, cos, sin):  # x: [B, Q, heads, hd]; cos, sin broadcast to [B, Q, 1, hd / 2]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, start: int, last_only: bool = False, greedy: bool = False) -> torch.Tensor:
        a = self.arch
        B, Q = tokens.shape[:2]
        end = start + Q
        if end > self.max_len:
            raise ValueError(f"sequence of {end} tokens exceeds the cache ({self.max_len})")
        pos = torch.arange(start, end, device=self.device)
        cos, sin = self.cos[pos][None, :, None, :], self.sin[pos][None, :, None, :]
        mask = None
        if Q > 1 and start > 0:  # causal, offset by the cached prefix
            mask = torch.arange(end, device=self.device)[None, :] <= pos[:, None]
        x = self._embed(tokens)
        hd, kv = a.head_dim, a.kv_heads
        for i, w in enumerate(self.layers):
            qkv = self._norm(x) @ w["wqkv"]
            q, k, v = qkv.split([a.heads * hd, kv * hd, kv * hd], dim=-1)
            q = self._rotate(q.view(B, Q, a.heads, hd), cos, sin).transpose(1, 2)
            k = self._rotate(k.view(B, Q, kv, hd), cos, sin).transpose(1, 2)
            self.cache[i, 0, :B, :, start:end] = k
            self.cache[i, 1, :B, :, start:end] = v.view(B, Q, kv, hd).transpose(1, 2)
            keys, vals = self.cache[i, 0, :B, :, :end], self.cache[i, 1, :B, :, :end]
            att = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask, is_causal=(Q > 1 and start == 0),
                                                 enable_gqa=kv != a.heads)
            x = self._mlp(x + self._proj(att.transpose(1, 2).reshape(B, Q, a.heads * hd), w["wo"]), w)
        if last_only:
            x = x[:, -1:]
        return self._out(x, greedy)

    def _mlp(self, x, w):
        gate, up = (self._norm(x) @ w["wgu"]).chunk(2, dim=-1)
        return x + self._proj(F.silu(gate) * up, w["wdown"])

    def _proj(self, x, w):
        """A block's output projection (attention's, the MLP's): a tensor-parallel shard sums it over its group."""
        return x @ w

    def _logits(self, x):
        """The LM head (a tensor-parallel shard gathers its slice of the vocabulary)."""
        return x @ self.lm_head

    def _embed(self, tokens):
        """The first block's input: token ids [B, Q] looked up (a later pipeline stage takes the
        activations [B, Q, hidden] of the stage before it)."""
        return self.embed[tokens]

    def _out(self, x, greedy: bool):
        """After the last block: the logits, or with `greedy` the next-token ids (a pipeline stage
        before the last hands on its activations instead)."""
        logits = self._logits(self._norm(x))
        return logits.argmax(-1) if greedy else logits

    def input_like(self, batch: int, query: int) -> torch.Tensor:
        """A placeholder of the input a forward takes (token ids here), for a graph's capture."""
        return torch.randint(0, self.arch.vocab, (batch, query), device=self.device)

    @torch.inference_mode()
    def forward_at(self, tokens: torch.Tensor, starts: torch.Tensor, span: int) -> torch.Tensor:
        """Next-token ids [B, Q] (greedy) for `tokens` [B, Q] placed at positions starts[b].. of row b
        (`starts`: a [B] tensor on the device), attending to cache slots below `span` that are not
        after each token (a mask, so stale slots of rolled-back tokens are never read). No shape
        depends on the positions: one capture serves every position with start + Q <= span."""
        a = self.arch
        B, Q = tokens.shape[:2]
        hd, kv = a.head_dim, a.kv_heads
        pos = starts[:, None] + torch.arange(Q, device=self.device)  # [B, Q]
        mask = torch.arange(span, device=self.device)[None, None, None, :] <= pos[:, None, :, None]
        cos, sin = self.cos[pos][:, :, None, :], self.sin[pos][:, :, None, :]
        slots = pos[:, None, :, None].expand(B, kv, Q, hd)
        x = self._embed(tokens)
        for i, w in enumerate(self.layers):
            qkv = self._norm(x) @ w["wqkv"]
            q, k, v = qkv.split([a.heads * hd, kv * hd, kv * hd], dim=-1)
            q = self._rotate(q.view(B, Q, a.heads, hd), cos, sin).transpose(1, 2)
            self.cache[i, 0, :B].scatter_(2, slots, self._rotate(k.view(B, Q, kv, hd), cos, sin).transpose(1, 2))
            self.cache[i, 1, :B].scatter_(2, slots, v.view(B, Q, kv, hd).transpose(1, 2))
            keys, vals = self.cache[i, 0, :B, :, :span], self.cache[i, 1, :B, :, :span]
            att = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask, enable_gqa=kv != a.heads)
            x = self._mlp(x + self._proj(att.transpose(1, 2).reshape(B, Q, a.heads * hd), w["wo"]), w)
        return self._out(x, greedy=True)

    @torch.inference_mode()
    def prefill_rows(self, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Next-token ids [k, P] for k prompts `tokens` [k, P] at context 0, their keys and values
        written into cache rows `rows` (a [k] tensor): causal attention over the prompts themselves,
        so no shape depends on which rows they go to."""
        a = self.arch
        k, P = tokens.shape[:2]
        hd, kv = a.head_dim, a.kv_heads
        cos, sin = self.cos[:P][None, :, None, :], self.sin[:P][None, :, None, :]
        x = self._embed(tokens)
        for i, w in enumerate(self.layers):
            qkv = self._norm(x) @ w["wqkv"]
            q, keys, vals = qkv.split([a.heads * hd, kv * hd, kv * hd], dim=-1)
            q = self._rotate(q.view(k, P, a.heads, hd), cos, sin).transpose(1, 2)
            keys = self._rotate(keys.view(k, P, kv, hd), cos, sin).transpose(1, 2)
            vals = vals.view(k, P, kv, hd).transpose(1, 2)
            self.cache[i, 0, :, :, :P].index_copy_(0, rows, keys)
            self.cache[i, 1, :, :, :P].index_copy_(0, rows, vals)
            att = F.scaled_dot_product_attention(q, keys, vals, is_causal=True, enable_gqa=kv != a.heads)
            x = self._mlp(x + self._proj(att.transpose(1, 2).reshape(k, P, a.heads * hd), w["wo"]), w)
        return self._out(x, greedy=True)
