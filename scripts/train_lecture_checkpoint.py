"""Train the models of lectures/06_residual_stream.ipynb and save them to lectures/checkpoints/.

Character-level language models with Assignment 5's architecture (learned positions, Pre-LN blocks
of LayerNorm, multi-head attention and a GELU feed-forward network, a final LayerNorm, an untied
head; Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"), trained on the
first 90 % of Assignment 5's sonnets (solutions/a5_transformer_lm/corpus.txt) with Assignment 5's
recipe (AdamW, OneCycleLR, batches of 32 windows of 64 characters; 1,000 steps instead of its 800),
seeds 0, 1 and 2 of each of:

- ``residual``: 4 layers, the usual block, x = x + attn(norm1(x)); x = x + ffn(norm2(x));
- ``no_residual``: 4 layers, the same block without its two residual additions,
  x = attn(norm1(x)); x = ffn(norm2(x)). It does not learn beyond the character frequencies, so only
  seed 0's weights are kept (the losses of all three are recorded);
- ``residual_1layer`` and ``no_residual_1layer``: the same pair with 1 layer, which both learn.

A seed fixes the initial weights and the batches, so two models of one seed and depth start from the
same weights and see the same text in the same order. Training runs in float32 on one CPU thread with
PyTorch's fused attention (deterministic: the same seed gives the same weights on the same machine);
afterwards each model is checked against the course's float64 reference (autograder/reference.py)
and stored in float16 (0.4 MB a 4-layer model, 0.13 MB a 1-layer one). The checkpoint records each
model's held-out loss recomputed in float64 from the stored float16 weights, which the lecture and
tests/test_lecture_checkpoint.py compare against.

    python scripts/train_lecture_checkpoint.py    # about 17 min on one thread of a busy 2-core machine
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder import reference as R

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "solutions" / "a5_transformer_lm" / "corpus.txt"
OUT = REPO / "lectures" / "checkpoints" / "residual_stream.pt"
CONFIG = dict(d_model=64, n_heads=4, max_len=64)  # Assignment 5's block_size; its d_model (128) halved
TRAINING = dict(steps=1000, batch_size=32, lr=6e-3, weight_decay=0.1, pct_start=0.1)  # a5's recipe; a5: 800 steps
SEEDS = (0, 1, 2)
VARIANTS = {  # name -> depth, residual connections, how many seeds' weights are stored
    "residual": dict(n_layers=4, residual=True, stored=3),
    "no_residual": dict(n_layers=4, residual=False, stored=1),
    "residual_1layer": dict(n_layers=1, residual=True, stored=3),
    "no_residual_1layer": dict(n_layers=1, residual=False, stored=3),
}
EVAL = dict(windows=16, seed=1234)  # the fixed held-out windows every recorded loss is measured on


def load_corpus() -> tuple[str, str, torch.Tensor, torch.Tensor]:
    """(text, chars, train ids, held-out ids): the first 90 % to train on, the last 10 % held out, as in a5."""
    text = CORPUS.read_text(encoding="utf-8")
    chars = "".join(sorted(set(text)))
    ids = torch.tensor([chars.index(c) for c in text], dtype=torch.int64)
    n_train = int(0.9 * len(ids))
    return text, chars, ids[:n_train], ids[n_train:]


def windows(ids: torch.Tensor, n: int, generator: torch.Generator, T: int = CONFIG["max_len"]) -> torch.Tensor:
    """n windows of T consecutive tokens at random places: (n, T)."""
    starts = torch.randint(0, len(ids) - T + 1, (n,), generator=generator)
    return torch.stack([ids[s:s + T] for s in starts])


def eval_windows(held_out: torch.Tensor) -> torch.Tensor:
    return windows(held_out, EVAL["windows"], torch.Generator().manual_seed(EVAL["seed"]))  # (16, 64)


def lm_forward(state: dict, tokens: torch.Tensor, *, residual: bool = True) -> torch.Tensor:
    """float64 logits (B, T, V) of a checkpoint's model, from the course's reference functions."""
    if residual:
        return R.transformer_lm(state, tokens, n_heads=CONFIG["n_heads"])
    x = state["tok_emb.weight"].double()[tokens] + state["pos_emb.weight"].double()[: tokens.shape[1]]
    mask = R.causal_mask(tokens.shape[1])  # (T, T), True = may attend
    for i in range(len({name.split(".")[1] for name in state if name.startswith("blocks.")})):
        block = R.sub(state, f"blocks.{i}.")
        x = R.multi_head_attention(R.sub(block, "attn."), R.layer_norm(R.sub(block, "norm1."), x),
                                   mask=mask, n_heads=CONFIG["n_heads"])  # no "x +": the stream is replaced
        x = R.feed_forward(R.sub(block, "ffn."), R.layer_norm(R.sub(block, "norm2."), x))
    return R.layer_norm(R.sub(state, "norm_f."), x) @ state["lm_head.weight"].double().T  # (B, T, V)


# --- the float32 model that is trained: parameter names as autograder/reference.py's state dicts ---

class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, d_model) -> (B, T, H, d_head) -> (B, H, T, d_head), head h owning features h*d_head:(h+1)*d_head
        q, k, v = (p(x).unflatten(-1, (self.n_heads, -1)).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d_head)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # (B, H, T, d_head) -> (B, T, d_model)


class FeedForward(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.up, self.down = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.norm1, self.attn = nn.LayerNorm(d_model), Attention(d_model, n_heads)
        self.norm2, self.ffn = nn.LayerNorm(d_model), FeedForward(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))
        x = x + a if self.residual else a
        f = self.ffn(self.norm2(x))
        return x + f if self.residual else f


class LM(nn.Module):
    def __init__(self, vocab_size: int, n_layers: int, residual: bool, d_model: int, n_heads: int, max_len: int):
        super().__init__()
        self.tok_emb, self.pos_emb = nn.Embedding(vocab_size, d_model), nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, residual) for _ in range(n_layers))
        self.norm_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        for module in self.modules():  # GPT-2's initialisation, as Assignment 5's TransformerLM
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(tokens) + self.pos_emb.weight[: tokens.shape[1]]  # (B, T, d) + (T, d)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm_f(x))  # (B, T, V)


def train(seed: int, n_layers: int, residual: bool, vocab_size: int, train_ids: torch.Tensor) -> tuple[dict, float]:
    """Train one model; returns its float16 state dict and its last training-batch loss."""
    torch.manual_seed(seed)
    model = LM(vocab_size, n_layers, residual, **CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=TRAINING["lr"], weight_decay=TRAINING["weight_decay"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=TRAINING["lr"], total_steps=TRAINING["steps"],
                                                   pct_start=TRAINING["pct_start"])
    batches = torch.Generator().manual_seed(seed)
    for _ in range(TRAINING["steps"]):
        tokens = windows(train_ids, TRAINING["batch_size"], batches)  # (32, 64)
        loss = F.cross_entropy(model(tokens)[:, :-1].transpose(1, 2), tokens[:, 1:])  # (B, V, T-1) vs (B, T-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    state = {name: p.detach().clone() for name, p in model.state_dict().items()}
    check = windows(train_ids, 4, torch.Generator().manual_seed(seed))
    with torch.no_grad():  # the trained module computes what the float64 reference computes from its weights
        assert torch.allclose(model(check).double(), lm_forward(state, check, residual=residual), atol=1e-3)
    return {name: w.half() for name, w in state.items()}, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)  # deterministic, and small tensors gain little from more threads
    _, chars, train_ids, held_out = load_corpus()
    held = eval_windows(held_out)
    models: dict = {variant: [] for variant in VARIANTS}
    val_loss: dict = {variant: [] for variant in VARIANTS}
    for variant, spec in VARIANTS.items():
        for seed in SEEDS:
            started = time.time()
            state, last = train(seed, spec["n_layers"], spec["residual"], len(chars), train_ids)
            loss = R.lm_loss(lm_forward(state, held, residual=spec["residual"]), held).item()
            if seed < spec["stored"]:
                models[variant].append(state)
            val_loss[variant].append(loss)
            print(f"{variant:12s} seed {seed}: last batch {last:.3f}, held-out {loss:.4f} nats/char "
                  f"(ln V = {math.log(len(chars)):.3f}), {time.time() - started:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": CONFIG, "variants": VARIANTS, "training": TRAINING, "seeds": list(SEEDS), "eval": EVAL,
                "chars": chars, "models": models, "val_loss": val_loss}, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
