"""Measuring Hugging Face transformers: its assisted generation, an engine specsim did not write.

The models are transformers' own `LlamaForCausalLM` with random weights at specsim's preset
sizes. Acceptance is controlled without touching the engine's loop: forward hooks on the two LM
heads rewrite the logits after they are computed (every FLOP stays real). The target always
prefers `TARGET_TOKEN`, so its greedy choice is known; the draft proposes `TARGET_TOKEN` with
probability alpha and `OTHER_TOKEN` otherwise, independently per drafted position (a seeded
numpy Generator). Greedy assisted generation then accepts each drafted token with probability
alpha until the first rejection: an iid-alpha oracle run by the real engine.

What transformers 5.17 does per speculative step (`generation/utils.py`:
`GenerationMixin._assisted_decoding`; `generation/candidate_generator.py`:
`AssistedCandidateGenerator`), as the simulator should model it:

- Drafting is a nested `assistant_model.generate(...)` call per step
  (`AssistedCandidateGenerator._generate_candidates`), so it carries a whole `generate` set-up
  (config copies, logits processors, stopping criteria) on the host every step. It makes
  k = min(gamma, max_length - cur_len - 1) draft forward calls, one per drafted token; when only
  one token is left (k = 0) the draft is not called and the target decodes alone. The number of
  draft tokens, its schedule and the confidence threshold are read from
  `assistant_model.generation_config` (`AssistedCandidateGenerator.__init__`), not from the
  arguments of the target's `generate`: `assisted` sets them there.
- The draft's first call of a step re-feeds two tokens: `_update_past_and_masks` crops the draft
  cache to len(input_ids) - 2, so the first draft forward has query 2 (the last token the
  draft produced or accepted, and the target's correction or bonus token), then k - 1 forwards of
  query 1. After a full accept the two tokens are the last draft token (never fed to the draft)
  and the bonus token, the usual catch-up; after a rejection the first of the two was already in
  the draft cache and is recomputed. Only the very first step prefills the draft with the prompt.
  The draft cache is cropped lazily, at the start of the next step, by
  `DynamicCache.crop(-(cache_len - (len(input_ids) - 2)))`.
- The target's prefill is merged into the first verification: on the first iteration
  (`is_first_iteration`) it forwards prompt + k candidates in one call with an empty cache;
  afterwards each verification forwards k + 1 tokens (the last accepted token, not yet in the
  target cache, and the k candidates), with `logits_to_keep = k + 1`. Its cache is cropped right
  after verification by `outputs.past_key_values.crop(-(k - n_matches))`.
- Host work and synchronisations per step, counted with `torch.cuda.set_sync_debug_mode` on an
  H200 (llama2-7b target, llama-68m draft, gamma 4): the draft's `generate` reads its stop flag
  back after every token (`StopCheck.__call__`, `unfinished_sequences.max() == 0`; the deferred
  check that avoids this, `DeferredStopCheck`, is for "mps" only and never for an assistant),
  `masking_utils._ignore_causal_mask_sdpa` reads `fast_all(padding_mask)` in every forward of
  query 1 (or query = context) to decide whether it can skip the causal mask, and
  `_prepare_special_tokens` copies token ids to the device once per `generate` call. On the
  target side `n_matches`, a 0-d device tensor, is read by `if is_done_candidate and n_matches ==
  candidate_length`, by `selected_tokens[:, : n_matches + 1]`, by
  `_update_model_kwargs_for_generation` (`num_new_tokens=n_matches + 1` in `arange`/`new_ones`)
  and by `DynamicLayer.crop` (two reads per layer, four when something is cropped), then
  `_has_unfinished_sequences` reads the finished flag. Observed: 388 reads for 5 steps with
  alpha 1 (19 draft forwards), 3305 for 24 steps with alpha 0; only the first read after new
  device work waits, so the barriers are one per draft token and one per verification: the
  draft never runs ahead of the host and drafting waits for the verification's result.
- Measured on that H200 (prompt 128, bf16): the eager forward of the 7B target is host-bound,
  about 20 ms at query 1 with launch time equal to the synchronised time; a warm step of gamma 4
  took about 40-50 ms and a plain decode step about 30 ms. The first run at new lengths was 4-5x
  slower (new CUDA allocator segments as the dynamic caches grow): run every configuration once
  untimed before timing it.
- Batch size 1 only (`_assisted_decoding` raises otherwise); the cache is dynamic
  (`DynamicCache`, tensors re-allocated by `torch.cat` as they grow), no CUDA graphs.

`target_calls` and `draft_calls` in every result list (batch, query_tokens, context_tokens) of each
forward call of the two models, recorded by forward pre-hooks, so the simulator's step model can be checked
against what the engine really ran.
"""

from __future__ import annotations

import gc
import time

import numpy as np
import torch
import transformers

from ..catalog import PRESETS

TARGET_TOKEN = 7  # the token the target always chooses
OTHER_TOKEN = 8  # what the draft proposes when it should be rejected
LOGIT = 100.0  # the preferred token's logit (others 0): softmax ~ 1, no confidence stop can fire


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CPU work is already done when it returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(preset: str, device="cpu", dtype=torch.float32, seed: int = 0) -> transformers.LlamaForCausalLM:
    """A transformers `LlamaForCausalLM` with random weights (seeded) at the sizes of
    `PRESETS[preset]`, made directly on `device` in `dtype`, in eval mode, set never to stop on
    an end-of-sequence token."""
    arch = PRESETS[preset]
    config = transformers.LlamaConfig(
        hidden_size=arch.hidden, intermediate_size=arch.ffn, num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads, num_key_value_heads=arch.kv_heads, vocab_size=arch.vocab,
        max_position_embeddings=8192, tie_word_embeddings=arch.tied_embeddings,
        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    with torch.device(device):
        model = transformers.LlamaForCausalLM._from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


class _Recorder:
    """Forward hooks on a target and (optionally) a draft: the logit rewrites of the oracle,
    the shape of every forward call, and the time each target forward ends."""

    def __init__(self, target, draft=None, alpha: float = 1.0, seed: int = 0):
        self.device = target.device
        self.rng = np.random.default_rng(seed)
        self.alpha = alpha
        self.target_calls: list[tuple[int, int, int]] = []
        self.draft_calls: list[tuple[int, int, int]] = []
        self.steps: list[list[bool]] = [[]]  # draft decisions since the last target forward
        self.ends: list = []
        self.handles = [target.register_forward_pre_hook(self._shape(self.target_calls), with_kwargs=True),
                        target.lm_head.register_forward_hook(self._target_head)]
        if draft is not None:
            self.handles += [draft.register_forward_pre_hook(self._shape(self.draft_calls), with_kwargs=True),
                             draft.lm_head.register_forward_hook(self._draft_head)]

    @staticmethod
    def _shape(calls):
        """A forward pre-hook appending (batch, query tokens, cached tokens) of each call to `calls`."""
        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            cache = kwargs.get("past_key_values")
            calls.append((ids.shape[0], ids.shape[1], cache.get_seq_length() if cache is not None else 0))
        return hook

    def _target_head(self, module, args, out):
        """The target prefers TARGET_TOKEN everywhere; a target forward ends a step: time it."""
        out.zero_()
        out[..., TARGET_TOKEN] = LOGIT
        if self.device.type == "cuda":  # an event on the stream: no synchronisation
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.ends.append(event)
        else:
            self.ends.append(time.perf_counter())
        self.steps.append([])
        return out

    def _draft_head(self, module, args, out):
        """The draft's next token is TARGET_TOKEN with probability alpha, else OTHER_TOKEN."""
        accept = bool(self.rng.random() < self.alpha)
        out.zero_()
        out[:, -1, TARGET_TOKEN if accept else OTHER_TOKEN] = LOGIT
        self.steps[-1].append(accept)
        return out

    def start(self):
        """Mark the start of the timed call (after the device is synchronised)."""
        if self.device.type == "cuda":
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.start_event.record()
        self.t0 = time.perf_counter()

    def step_end_s(self) -> list[float]:
        """Seconds from the start to the end of each target forward (call after a synchronisation)."""
        if self.device.type == "cuda":
            return [self.start_event.elapsed_time(e) / 1e3 for e in self.ends]
        return [t - self.t0 for t in self.ends]

    def drafted(self) -> list[int]:
        """Tokens the draft proposed for each verification step."""
        return [len(decisions) for decisions in self.steps[:-1]]

    def accepted(self) -> list[int]:
        """Drafted tokens accepted at each verification: the leading accepts among the draft's
        decisions made before that target forward."""
        counts = []
        for decisions in self.steps[:-1]:
            n = 0
            while n < len(decisions) and decisions[n]:
                n += 1
            counts.append(n)
        return counts

    def remove(self):
        """Take the hooks off the models."""
        for h in self.handles:
            h.remove()


def _run(target, draft, prompt_ids, new_tokens, alpha, seed, **kwargs) -> dict:
    """One timed greedy `generate` of exactly `new_tokens` tokens with the hooks on."""
    if draft is target:
        raise ValueError("target and draft must be two model objects: the hooks tell them apart")
    rec = _Recorder(target, draft, alpha, seed)
    try:
        with torch.inference_mode():
            _sync(target.device)
            rec.start()
            out = target.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids),
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                  eos_token_id=None, pad_token_id=0, **kwargs)
            _sync(target.device)
            seconds = time.perf_counter() - rec.t0
    finally:
        rec.remove()
    tokens = out.shape[1] - prompt_ids.shape[1]
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "accepted": rec.accepted() if draft is not None else [],
            "drafted": rec.drafted() if draft is not None else [], "step_end_s": rec.step_end_s(),
            "target_calls": rec.target_calls, "draft_calls": rec.draft_calls,
            "all_target_token": bool((out[0, prompt_ids.shape[1]:] == TARGET_TOKEN).all())}


def assisted(target, draft, prompt_ids: torch.Tensor, new_tokens: int, gamma: int, alpha: float,
             seed: int = 0) -> dict:
    """Greedy assisted generation of exactly `new_tokens` tokens after `prompt_ids` (shape
    [1, P], on the target's device), `gamma` draft tokens per step (constant schedule, no
    confidence stop), each accepted iid with probability `alpha` (the oracle hooks).

    Returns tokens (generated), seconds (the whole `generate`, synchronised before and after),
    tokens_per_s, accepted (drafted tokens accepted per verification step), drafted (tokens drafted
    per step: gamma, fewer near the end), step_end_s (end of
    each target forward since the start: CUDA events recorded on the stream, read after the final
    synchronisation, so no synchronisation is added; `perf_counter` on CPU), target_calls and
    draft_calls ((batch, query_tokens, context_tokens) of each forward) and all_target_token
    (every generated token is the target's choice, as greedy decoding must give)."""
    config = draft.generation_config  # where the candidate generator reads these (see above)
    config.num_assistant_tokens = gamma
    config.num_assistant_tokens_schedule = "constant"
    config.assistant_confidence_threshold = 0.0
    config.eos_token_id, config.pad_token_id = None, 0
    return _run(target, draft, prompt_ids, new_tokens, alpha, seed, assistant_model=draft,
                num_assistant_tokens=gamma, num_assistant_tokens_schedule="constant",
                assistant_confidence_threshold=0.0)


def plain(target, prompt_ids: torch.Tensor, new_tokens: int) -> dict:
    """Greedy autoregressive `generate` of exactly `new_tokens` tokens, with the fields of
    `assisted` (accepted, drafted and draft_calls empty; one step_end_s per target forward)."""
    return _run(target, None, prompt_ids, new_tokens, 1.0, 0)


@torch.inference_mode()
def time_forward(model, batch: int, query: int, context: int, samples: int, logits_to_keep: int = 0) -> list[float]:
    """Seconds per forward of `batch` sequences of `query` new tokens on top of `context` tokens
    in a `DynamicCache` (filled by one prefill), the device synchronised around each forward and
    the cache cropped back to `context` between samples; two untimed forwards first; the garbage
    collector off while they run, as in a timed run.
    `logits_to_keep` as transformers takes it: 0 computes logits for every query position (as a
    verification does), 1 only for the last (as a decode step does)."""
    vocab = model.config.vocab_size
    cache = transformers.DynamicCache(config=model.config)
    if context:
        model(input_ids=torch.randint(0, vocab, (batch, context), device=model.device),
              past_key_values=cache, use_cache=True, logits_to_keep=1)
    tokens = torch.randint(0, vocab, (batch, query), device=model.device)
    times = []
    gc.collect()
    gc.disable()  # as in a timed run (measure_runs): no collector pauses inside a timed forward
    try:
        for i in range(samples + 2):
            _sync(model.device)
            t0 = time.perf_counter()
            model(input_ids=tokens, past_key_values=cache, use_cache=True, logits_to_keep=logits_to_keep)
            _sync(model.device)
            if i >= 2:
                times.append(time.perf_counter() - t0)
            cache.crop(-query)
    finally:
        gc.enable()
    return times


def models_of(dev, dtype):
    """model(name, seed): one model object per (preset, seed), built on first use. Runs use seed 1
    for the target and 2 for the draft: two models even of one preset (the hooks tell them apart)."""
    built: dict[tuple[str, int], object] = {}

    def model(name: str, seed: int):
        if (name, seed) not in built:
            built[(name, seed)] = build(name, dev, dtype, seed)
        return built[(name, seed)]

    return model


def runner(configs: list[dict], dev, dtype, model, seed: int = 0, empty_cache: bool = False, probes: bool = False):
    """one(i, round) -> the measurement record of one timed run of configuration i (see measure_runs);
    `probes`: host probes right before and right after the run (measure.host_probe)."""
    from .measure import device_name, host_probe

    def one(i: int, rnd: int) -> dict:
        cfg = configs[i]
        prompt = torch.randint(0, 32000, (1, cfg["prompt_tokens"]),
                               generator=torch.Generator().manual_seed(seed + i)).to(dev)
        target = model(cfg["target"], 1)
        draft = model(cfg["draft"], 2) if cfg.get("draft") else None
        if probes:
            now, record = host_probe(target, draft, cfg["prompt_tokens"])
            before = now()
        gc.collect()
        if empty_cache and dev.type == "cuda":
            torch.cuda.empty_cache()
        started = time.time()
        gc.disable()  # no collector pauses inside a timed generation
        try:
            res = (assisted(target, draft, prompt, cfg["output_tokens"], cfg["gamma"], cfg["alpha"],
                            seed=seed * 1000 + i) if draft is not None else plain(target, prompt, cfg["output_tokens"]))
        finally:
            gc.enable()
        host = record(before, now()) if probes else None
        return {"engine": "hf", "target": cfg["target"], "draft": cfg.get("draft"),
                "gamma": cfg.get("gamma", 0), "mode": "oracle" if cfg.get("draft") else "autoregressive",
                "alpha": cfg.get("alpha"), "prompt_tokens": cfg["prompt_tokens"], "output_tokens": res["tokens"],
                "seconds": res["seconds"], "tokens_per_s": res["tokens_per_s"], "batch": 1,
                "accepted": res["accepted"], "device": device_name(dev), "repeat": rnd, "round": rnd,
                "execution": "eager", "started_unix_s": round(started, 3),
                "target_profile": cfg["target_profile"], "draft_profile": cfg.get("draft_profile"),
                "step_end_s": [round(t, 6) for t in res["step_end_s"]],
                "target_calls": res["target_calls"], "draft_calls": res["draft_calls"],
                "all_target_token": res["all_target_token"], **({"host_probe": host} if host else {})}

    return one


def measure_runs(configs: list[dict], out, device: str = "cuda", repeats: int = 3, seed: int = 0,
                 log=print, empty_cache: bool = False, probes: bool = False) -> None:
    """Real runs of the engine, one JSON line each (the measurement-file format, `engine: hf`), in
    the protocol of `measure.measure_runs`: an untimed round over every configuration, then
    `repeats` timed rounds, each in its own shuffled order; a configuration's repeats draw the same
    acceptance decisions, so their spread is the machine's alone. `empty_cache`: every run starts
    with PyTorch's CUDA caching allocator emptied (whatever the run before it left there); `probes`: host
    probes around every run (measure.host_probe). A config: target, draft (or
    None), gamma, alpha, prompt_tokens, output_tokens and the profile names."""
    from pathlib import Path

    from .measure import round_robin, setup

    dev, dtype = setup(device, None)  # as the profile was measured (cuDNN attention off)
    one = runner(configs, dev, dtype, models_of(dev, dtype), seed, empty_cache, probes)
    round_robin(len(configs), repeats, seed, Path(out), log, one)
