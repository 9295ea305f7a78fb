"""The right answers of ``generate``, replayed in the grader: greedy decoding and seeded sampling.

``autograder/reference.py`` holds the model, not the decoding loop, so the loop is here: the prediction after the
last of at most max_len tokens, its argmax (temperature 0) or one ``torch.multinomial`` draw from
softmax(logits / temperature) over the top_k logits (top-k sampling: Fan, Lewis & Dauphin, "Hierarchical Neural
Story Generation", 2018).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def greedy(logits_of: Callable, prompt: torch.Tensor, n: int, max_len: int) -> torch.Tensor:
    """generate(model, prompt, n, temperature=0), where logits_of(context) gives the model's (B, T, V) logits."""
    seq = prompt.clone()
    for _ in range(n):
        next_token = logits_of(seq[:, -max_len:])[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        seq = torch.cat([seq, next_token], dim=1)
    return seq


def bigram_logits(table: torch.Tensor) -> Callable:
    """logits_of of a BigramLM with this table: the row of each token."""
    return lambda context: table[context]  # (B, T) -> (B, T, V)


def worker_generator(ctx, seed: int):
    """A seeded generator in the worker, on the student's device (torch.multinomial wants it by the probabilities)."""
    return ctx.builtin("generator", seed, device=ctx.session.device)


def sample_bigram(table, prompt, n, temperature, top_k, seed, style="mask", device="cpu"):
    """What generate must return: softmax(logits / T) over the top_k logits, one torch.multinomial draw per step.

    ``style="gather"`` samples among the k largest logits and maps the draw back to token ids: another correct
    way, which draws other tokens from the same generator. Drawn on ``device``, the worker's: CUDA and CPU
    generators seeded alike give different tokens (and a CUDA stream depends on the GPU), so the replay runs
    where the student's draw ran; the tokens come back to the CPU.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    table, seq = table.to(device), prompt.to(device)
    for _ in range(n):
        logits = table[seq[:, -1]] / temperature  # (B, V)
        if top_k is not None and style == "gather":  # sample among the k values, then map back to token ids
            top, ids = torch.topk(logits, min(top_k, logits.shape[-1]))
            nxt = ids.gather(-1, torch.multinomial(torch.softmax(top, -1), 1, generator=g))
        else:
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
        seq = torch.cat([seq, nxt], dim=1)
    return seq.cpu()
