"""Variants of the a5_transformer_lm solution: realistic bugs, other correct styles, and cheats.

Every entry replaces one or more exercise cells (by nbgrader grade_id) of
``solutions/a5_transformer_lm/transformer_lm.ipynb``; the rest of the notebook, the given cells
included, stays the reference solution. ``tests/test_a5_catalog.py`` grades each variant:

- ``MUTANTS``: a student's plausible bug. The hidden tests in ``fails`` must fail, and the
  first of them must name the bug (its output contains ``says``, case-insensitive).
- ``ALTERNATIVES``: correct code in another style; must get full marks.
- ``CHEATS``: attempts to get credit without doing the work, or to break the grader;
  each carries a ``check(report)`` that asserts the expected outcome.
"""

from __future__ import annotations

from tests.variants import (
    Cheat,
    Variant,
    by_name,
    expect_failing,
    expect_full_marks,
    expect_no_credit,
    failures,
)

EXERCISES = ("TransformerLM", "lm_loss", "train_step", "generate")


def patch(source: str, old: str, new: str) -> str:
    """``source`` with the one occurrence of ``old`` replaced (a catalog typo fails loudly)."""
    assert source.count(old) == 1, f"expected exactly one {old!r} in the reference source"
    return source.replace(old, new)


# --- the reference cells, in pieces -----------------------------------------------------

LM_HEAD = '''\
class TransformerLM(nn.Module):
    """A decoder-only Transformer language model in the style of GPT-2 (Radford et al., 2019).

    tokens (B, T) -> tok_emb + pos_emb -> n_layers TransformerBlocks under a causal mask -> norm_f
    -> lm_head -> logits (B, T, vocab_size), where logits[:, t] scores the token that follows tokens[:, :t + 1].
    """

    def __init__(self, vocab_size, d_model, n_heads, n_layers, max_len, d_ff=None, norm_first=True,
                 dropout=0.0, positions="learned", tie_weights=False):
        """Create tok_emb, pos_emb, blocks, norm_f and lm_head; initialise as GPT-2; tie weights if asked."""
'''

LM_INIT = '''\
        super().__init__()
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', got {positions!r}")
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        if positions == "learned":
            self.pos_emb = nn.Embedding(max_len, d_model)
        else:
            self.register_buffer("pos_emb", sinusoidal_positions(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first, dropout=dropout) for _ in range(n_layers)
        )
        self.norm_f = LayerNorm(d_model) if norm_first else nn.Identity()
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        if tie_weights:
            self.lm_head.weight = self.tok_emb.weight
'''

LM_FORWARD_HEAD = '''
    def forward(self, tokens, lengths=None):
        """Logits (B, T, vocab_size) for int64 tokens (B, T), T <= max_len; lengths (B,) marks padding."""
'''

LM_FORWARD = '''\
        B, T = tokens.shape
        if T > self.max_len:
            raise ValueError(f"got {T} tokens, but the model has positions for max_len={self.max_len} only")
        if isinstance(self.pos_emb, nn.Embedding):
            pos = self.pos_emb(torch.arange(T, device=tokens.device))
        else:
            pos = self.pos_emb[:T]
        x = self.dropout(self.tok_emb(tokens) + pos)
        mask = causal_mask(T, device=tokens.device)
        if lengths is not None:
            mask = mask & padding_mask(lengths, T)
        for block in self.blocks:
            x = block(x, mask)
        return self.lm_head(self.norm_f(x))
'''


def lm(init: str = LM_INIT, forward: str = LM_FORWARD) -> str:
    return LM_HEAD + init + LM_FORWARD_HEAD + forward


def lm_init(old: str, new: str) -> str:
    return lm(init=patch(LM_INIT, old, new))


def lm_forward(old: str, new: str) -> str:
    return lm(forward=patch(LM_FORWARD, old, new))


LOSS_HEAD = '''\
def lm_loss(logits, tokens):
    """Mean cross-entropy of predicting tokens[:, 1:] from logits[:, :-1].

    Args:
        logits: (B, T, V) scores; logits[:, t] predicts tokens[:, t + 1].
        tokens: (B, T) int64 token ids.

    Returns:
        A 0-dimensional tensor: the mean over the B * (T - 1) predictions.
    """
'''


def loss(body: str) -> str:
    return LOSS_HEAD + body


TRAIN_HEAD = '''\
def train_step(model, optimizer, tokens):
    """One optimisation step of `model` on `tokens` (B, T); returns the loss before the update as a float."""
'''

TRAIN = '''\
    optimizer.zero_grad()
    loss = lm_loss(model(tokens), tokens)
    loss.backward()
    optimizer.step()
    return loss.item()
'''


def train(body: str) -> str:
    return TRAIN_HEAD + body


GENERATE_HEAD = '''\
@torch.no_grad()
def generate(model, prompt, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    """Extend `prompt` (B, T0) by `max_new_tokens` tokens, one at a time; returns (B, T0 + max_new_tokens).

    temperature == 0 picks the argmax (greedy); otherwise tokens are drawn from softmax(logits / temperature),
    restricted to the top_k largest logits when top_k is given, with torch.multinomial(..., generator=generator).
    The model never sees more than its last model.max_len tokens.
    """
'''

GENERATE = '''\
    tokens = prompt
    for _ in range(max_new_tokens):
        context = tokens[:, -model.max_len:]
        logits = model(context)[:, -1, :]
        if temperature == 0:
            next_token = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            next_token = torch.multinomial(probs, num_samples=1, generator=generator)
        tokens = torch.cat([tokens, next_token], dim=1)
    return tokens
'''


def gen(old: str, new: str) -> str:
    return GENERATE_HEAD + patch(GENERATE, old, new)


# --- MUTANTS ----------------------------------------------------------------------------

MUTANTS = [
    # TransformerLM: the causal mask
    Variant("lm_blocks_called_without_the_mask", {"TransformerLM": lm_forward("x = block(x, mask)", "x = block(x)")},
            fails=["lm_is_causal", "lm_matches_reference", "lm_masks_padding"], says="must not see later tokens"),
    Variant("lm_mask_upper_triangle", {"TransformerLM": lm_forward(
        "mask = causal_mask(T, device=tokens.device)",
        "mask = torch.ones(T, T, dtype=torch.bool, device=tokens.device).triu()  # query t sees keys t..")},
            fails=["lm_matches_reference", "lm_is_causal"], says="upper triangle (triu)"),
    Variant("lm_causal_mask_built_for_max_len", {"TransformerLM": lm_forward(
        "mask = causal_mask(T, device=tokens.device)", "mask = causal_mask(self.max_len, device=tokens.device)")},
            fails=["lm_logits_shape", "lm_matches_reference"], says="build the causal mask for T"),
    Variant("lm_lengths_ignored", {"TransformerLM": lm_forward(
        "        if lengths is not None:\n            mask = mask & padding_mask(lengths, T)\n", "")},
            fails=["lm_masks_padding"], says="lengths is ignored"),
    Variant("lm_padding_mask_replaces_the_causal_mask", {"TransformerLM": lm_forward(
        "            mask = mask & padding_mask(lengths, T)", "            mask = padding_mask(lengths, T)")},
            fails=["lm_masks_padding"], says="do not replace the causal mask"),
    # TransformerLM: embeddings and positions
    Variant("lm_positions_added_after_the_blocks", {"TransformerLM": lm_forward(
        "        x = self.dropout(self.tok_emb(tokens) + pos)\n",
        "        x = self.dropout(self.tok_emb(tokens))\n").replace(
        "            x = block(x, mask)\n", "            x = block(x, mask)\n        x = x + pos\n")},
            fails=["lm_matches_reference", "lm_sinusoidal_positions"], says="added after the blocks"),
    Variant("lm_positions_never_added", {"TransformerLM": lm_forward(
        "x = self.dropout(self.tok_emb(tokens) + pos)", "x = self.dropout(self.tok_emb(tokens))")},
            fails=["lm_matches_reference", "lm_gradients_match"], says="never adds the position embeddings"),
    Variant("lm_positions_indexed_from_1", {"TransformerLM": lm_forward(
        "torch.arange(T, device=tokens.device)", "torch.arange(1, T + 1, device=tokens.device)")},
            fails=["lm_matches_reference", "lm_logits_shape"], says="positions 1 .. T"),
    Variant("lm_pos_emb_with_vocab_size_rows", {"TransformerLM": lm_init(
        "self.pos_emb = nn.Embedding(max_len, d_model)", "self.pos_emb = nn.Embedding(vocab_size, d_model)")},
            fails=["lm_structure"], says="nn.Embedding(max_len, d_model)"),
    Variant("lm_embeddings_scaled_by_sqrt_d_model", {"TransformerLM": lm_forward(
        "x = self.dropout(self.tok_emb(tokens) + pos)",
        "x = self.dropout(self.tok_emb(tokens) * math.sqrt(self.tok_emb.embedding_dim) + pos)")},
            fails=["lm_matches_reference"], says="multiplied by sqrt(d_model)"),
    Variant("lm_sinusoids_as_a_parameter", {"TransformerLM": lm_init(
        'self.register_buffer("pos_emb", sinusoidal_positions(max_len, d_model), persistent=False)',
        "self.pos_emb = nn.Parameter(sinusoidal_positions(max_len, d_model))")},
            fails=["lm_sinusoidal_positions"], says="would be trained"),
    Variant("lm_whole_sinusoid_table_added", {"TransformerLM": lm_forward(
        "pos = self.pos_emb[:T]", "pos = self.pos_emb")},
            fails=["lm_sinusoidal_positions"], says="pos_emb[:T]"),
    # TransformerLM: blocks, norms, head
    Variant("lm_final_norm_never_applied", {"TransformerLM": lm_forward(
        "return self.lm_head(self.norm_f(x))", "return self.lm_head(x)")},
            fails=["lm_matches_reference"], says="without its final LayerNorm"),
    Variant("lm_norm_f_also_for_post_ln", {"TransformerLM": lm_init(
        "self.norm_f = LayerNorm(d_model) if norm_first else nn.Identity()", "self.norm_f = LayerNorm(d_model)")},
            fails=["lm_structure"], says="nn.Identity() when norm_first=False"),
    Variant("lm_norm_first_not_passed_to_the_blocks", {"TransformerLM": lm_init(
        "TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first, dropout=dropout)",
        "TransformerBlock(d_model, n_heads, d_ff, dropout=dropout)")},
            fails=["lm_matches_reference"], says="pass norm_first to every TransformerBlock"),
    Variant("lm_one_block_repeated", {"TransformerLM": lm_init(
        "nn.ModuleList(\n"
        "            TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first, dropout=dropout)"
        " for _ in range(n_layers)\n"
        "        )",
        "nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first, dropout=dropout)]"
        " * n_layers)")},
            fails=["lm_structure", "lm_matches_reference"], says="[block] * n_layers"),
    Variant("lm_blocks_in_a_python_list", {"TransformerLM": lm_init(
        "nn.ModuleList(\n"
        "            TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first, dropout=dropout)"
        " for _ in range(n_layers)\n"
        "        )",
        "[TransformerBlock(d_model, n_heads, d_ff, norm_first=norm_first, dropout=dropout) for _ in range(n_layers)]")},
            fails=["lm_structure", "lm_gradients_match"], says="an nn.ModuleList of TransformerBlock"),
    Variant("lm_head_with_a_bias", {"TransformerLM": lm_init(
        "self.lm_head = nn.Linear(d_model, vocab_size, bias=False)", "self.lm_head = nn.Linear(d_model, vocab_size)")},
            fails=["lm_structure"], says="lm_head has no bias"),
    Variant("lm_token_embeddings_detached", {"TransformerLM": lm_forward(
        "self.tok_emb(tokens) + pos", "self.tok_emb(tokens).detach() + pos")},
            fails=["lm_gradients_match", "lm_ties_weights"], says="tok_emb.weight received no gradient"),
    # TransformerLM: initialisation and tying
    Variant("lm_pytorch_default_init", {"TransformerLM": lm_init(
        "        for module in self.modules():\n            if isinstance(module, (nn.Linear, nn.Embedding)):\n"
        "                nn.init.normal_(module.weight, mean=0.0, std=0.02)\n"
        "                if getattr(module, \"bias\", None) is not None:\n"
        "                    nn.init.zeros_(module.bias)\n", "")},
            fails=["lm_initial_loss_near_ln_vocab"], says="N(0, 0.02**2)"),
    Variant("lm_init_of_linear_layers_only_then_tied", {"TransformerLM": lm_init(
        "isinstance(module, (nn.Linear, nn.Embedding))", "isinstance(module, nn.Linear)")},
            fails=["lm_initial_loss_near_ln_vocab"], says="confidently wrong"),
    Variant("lm_tie_weights_copies_the_values", {"TransformerLM": lm_init(
        "self.lm_head.weight = self.tok_emb.weight",
        "self.lm_head.weight = nn.Parameter(self.tok_emb.weight.detach().clone())")},
            fails=["lm_ties_weights"], says="two different tensors"),
    Variant("lm_tie_weights_ignored", {"TransformerLM": lm_init(
        "        if tie_weights:\n            self.lm_head.weight = self.tok_emb.weight\n", "")},
            fails=["lm_ties_weights"], says="two different tensors"),
    # lm_loss
    Variant("loss_target_not_shifted", {"lm_loss": loss(
        "    V = logits.size(-1)\n    return F.cross_entropy(logits.reshape(-1, V), tokens.reshape(-1))\n")},
            fails=["loss_matches_reference", "loss_gradient_matches"], says="without the shift"),
    Variant("loss_shift_reversed", {"lm_loss": loss(
        "    V = logits.size(-1)\n"
        "    return F.cross_entropy(logits[:, 1:].reshape(-1, V), tokens[:, :-1].reshape(-1))\n")},
            fails=["loss_matches_reference", "loss_gradient_matches"], says="the shift goes the wrong way"),
    Variant("loss_targets_rolled", {"lm_loss": loss(
        "    V = logits.size(-1)\n    targets = tokens.roll(-1, dims=1)  # the next token of every position\n"
        "    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))\n")},
            fails=["loss_matches_reference"], says="roll(-1"),
    Variant("loss_summed", {"lm_loss": loss(
        "    V = logits.size(-1)\n"
        "    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1), reduction=\"sum\")\n")},
            fails=["loss_matches_reference"], says="summed, not averaged"),
    Variant("loss_of_probabilities", {"lm_loss": loss(
        "    V = logits.size(-1)\n    probs = torch.softmax(logits[:, :-1], dim=-1)\n"
        "    return F.cross_entropy(probs.reshape(-1, V), tokens[:, 1:].reshape(-1))\n")},
            fails=["loss_matches_reference"], says="softmax probabilities"),
    Variant("loss_log_of_softmax", {"lm_loss": loss(
        "    probs = torch.softmax(logits[:, :-1], dim=-1)\n"
        "    return -torch.log(probs.gather(-1, tokens[:, 1:, None])).mean()\n")},
            fails=["loss_is_stable_for_large_logits"], says="underflows"),
    Variant("loss_view_of_a_non_contiguous_slice", {"lm_loss": loss(
        "    V = logits.size(-1)\n    return F.cross_entropy(logits[:, :-1].view(-1, V), tokens[:, 1:].view(-1))\n")},
            fails=["loss_is_a_scalar", "loss_matches_reference"], says="not .view(-1, V)"),
    Variant("loss_without_flattening", {"lm_loss": loss("    return F.cross_entropy(logits[:, :-1], tokens[:, 1:])\n")},
            fails=["loss_is_a_scalar"], says="flatten logits"),
    # train_step
    Variant("train_step_without_zero_grad", {"train_step": train(patch(TRAIN, "    optimizer.zero_grad()\n", ""))},
            fails=["train_step_does_one_step"], says="optimizer.zero_grad() is never called"),
    Variant("train_step_returns_the_tensor", {"train_step": train(patch(TRAIN, "return loss.item()", "return loss"))},
            fails=["train_step_returns_a_float", "train_step_does_one_step"], says="loss.item()"),
    Variant("train_step_steps_before_backward", {"train_step": train(
        "    optimizer.zero_grad()\n    loss = lm_loss(model(tokens), tokens)\n"
        "    optimizer.step()\n    loss.backward()\n    return loss.item()\n")},
            fails=["train_step_does_one_step", "train_step_overfits_a_batch"], says="did not change the parameters"),
    Variant("train_step_never_steps", {"train_step": train(patch(TRAIN, "    optimizer.step()\n", ""))},
            fails=["train_step_does_one_step", "train_step_overfits_a_batch"], says="optimizer.step()"),
    Variant("train_step_returns_the_loss_after_the_update", {"train_step": train(
        TRAIN.replace("    return loss.item()\n",
                      "    with torch.no_grad():\n        return lm_loss(model(tokens), tokens).item()\n"))},
            fails=["train_step_does_one_step"], says="loss after the update"),
    Variant("train_step_backward_through_detached_logits", {"train_step": train(
        patch(TRAIN, "lm_loss(model(tokens), tokens)", "lm_loss(model(tokens).detach(), tokens)"))},
            fails=["train_step_returns_a_float"], says="the loss has no graph"),
    # generate
    Variant("generate_never_crops", {"generate": gen("context = tokens[:, -model.max_len:]", "context = tokens")},
            fails=["generate_crops_to_max_len"], says="more than its max_len"),
    Variant("generate_crops_to_the_first_max_len_tokens", {"generate": gen(
        "context = tokens[:, -model.max_len:]", "context = tokens[:, :model.max_len]")},
            fails=["generate_crops_to_max_len"], says="first max_len tokens"),
    Variant("generate_crops_one_token_short", {"generate": gen(
        "context = tokens[:, -model.max_len:]", "context = tokens[:, -(model.max_len - 1):]")},
            fails=["generate_crops_to_max_len"], says="max_len - 1"),
    Variant("generate_feeds_only_the_last_token", {"generate": gen(
        "context = tokens[:, -model.max_len:]", "context = tokens[:, -1:]")},
            fails=["generate_crops_to_max_len"], says="only the last token"),
    Variant("generate_reads_the_first_position", {"generate": gen(
        "model(context)[:, -1, :]", "model(context)[:, 0, :]")},
            fails=["generate_greedy"], says="first position"),
    Variant("generate_greedy_by_sampling", {"generate": gen(
        "next_token = logits.argmax(dim=-1, keepdim=True)",
        "next_token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1, generator=generator)")},
            fails=["generate_greedy"], says="no sampling"),
    Variant("generate_temperature_after_the_softmax", {"generate": gen(
        "            logits = logits / temperature\n", "").replace(
        "probs = torch.softmax(logits, dim=-1)", "probs = torch.softmax(logits, dim=-1) / temperature")},
            fails=["generate_samples_with_the_generator"], says="applied after the softmax"),
    Variant("generate_temperature_multiplied", {"generate": gen(
        "logits = logits / temperature", "logits = logits * temperature")},
            fails=["generate_samples_with_the_generator"], says="multiplied by the temperature"),
    Variant("generate_top_k_keeps_one_too_many", {"generate": gen(
        "kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]",
        "kth = logits.sort(dim=-1, descending=True).values[:, min(top_k, logits.size(-1) - 1)].unsqueeze(-1)")},
            fails=["generate_samples_with_the_generator"], says="top 4 logits kept instead of the top 3"),
    Variant("generate_top_k_keeps_one_too_few", {"generate": gen("logits < kth", "logits <= kth")},
            fails=["generate_samples_with_the_generator"], says="top 2 logits kept instead of the top 3"),
    Variant("generate_top_k_not_clamped", {"generate": gen(
        "torch.topk(logits, min(top_k, logits.size(-1)))", "torch.topk(logits, top_k)")},
            fails=["generate_samples_with_the_generator"], says="min(top_k, logits.size(-1))"),
    Variant("generate_ignores_the_generator", {"generate": gen(
        "torch.multinomial(probs, num_samples=1, generator=generator)", "torch.multinomial(probs, num_samples=1)")},
            fails=["generate_samples_with_the_generator"], says="generator=generator"),
    Variant("generate_returns_only_the_new_tokens", {"generate": gen(
        "    return tokens\n", "    return tokens[:, prompt.shape[1]:]\n")},
            fails=["generate_shape_and_prompt", "generate_greedy"], says="prompt followed by the new tokens"),
]


# --- ALTERNATIVES ------------------------------------------------------------------------

LM_OTHER_STYLE = LM_HEAD + '''\
        super().__init__()
        if positions not in {"learned", "sinusoidal"}:
            raise ValueError(positions)
        self.max_len, self.d_model = max_len, d_model
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        if positions == "learned":
            self.pos_emb = nn.Embedding(max_len, d_model)
        else:
            self.register_buffer("pos_emb", sinusoidal_positions(max_len, d_model))  # persistent: in state_dict too
        self.blocks = nn.ModuleList()
        for _ in range(n_layers):
            self.blocks.append(TransformerBlock(d_model, n_heads, d_ff=d_ff, norm_first=norm_first, dropout=dropout))
        self.norm_f = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:  # tie first: the init below then initialises the shared tensor
            self.tok_emb.weight = self.lm_head.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)

    def forward(self, tokens, lengths=None):
        """Logits (B, T, vocab_size) for int64 tokens (B, T), T <= max_len; lengths (B,) marks padding."""
        T = tokens.size(1)
        assert T <= self.max_len, "sequence longer than max_len"
        table = self.pos_emb.weight if isinstance(self.pos_emb, nn.Embedding) else self.pos_emb
        h = self.tok_emb(tokens) + table[:T].unsqueeze(0)  # (1, T, d_model) broadcasts over the batch
        allowed = torch.tril(torch.ones(T, T, dtype=torch.bool, device=tokens.device))
        if lengths is not None:
            real = torch.arange(T, device=tokens.device)[None, :] < lengths[:, None]  # (B, T)
            allowed = allowed[None, None] & real[:, None, None, :]  # (B, 1, T, T)
        for layer in self.blocks:
            h = layer(h, mask=allowed)
        logits = self.lm_head(self.norm_f(h))
        return logits
'''

LM_FUNCTIONAL_HEAD = LM_HEAD + LM_INIT + '''
    def forward(self, tokens, lengths=None):
        """Logits (B, T, vocab_size) for int64 tokens (B, T), T <= max_len; lengths (B,) marks padding."""
        T = tokens.shape[-1]
        if T > self.max_len:
            raise ValueError("too long")
        positions = torch.arange(T, device=tokens.device)
        pos = self.pos_emb(positions) if isinstance(self.pos_emb, nn.Module) \
else self.pos_emb.index_select(0, positions)
        x = self.tok_emb(tokens) + pos
        mask = causal_mask(T, device=tokens.device)
        if lengths is not None:
            mask = padding_mask(lengths, T) & mask
        for i in range(len(self.blocks)):
            x = self.blocks[i](x, mask=mask)
        x = self.norm_f(x)
        return x @ self.lm_head.weight.T  # the head as a matrix product: (B, T, D) @ (D, V)
'''

LOSS_LOG_SOFTMAX_GATHER = loss('''\
    log_probs = F.log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V)
    targets = tokens[:, 1:].unsqueeze(-1)  # (B, T-1, 1)
    return -log_probs.gather(-1, targets).squeeze(-1).mean()
''')

LOSS_CLASS_DIM_1 = loss('''\
    # cross_entropy takes (N, C, d1) logits with (N, d1) targets: move the vocabulary to dim 1
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:])
''')

TRAIN_OTHER_STYLE = train('''\
    model.train()
    logits = model(tokens)
    loss = lm_loss(logits, tokens)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # ready for the next step
    return float(loss.detach())
''')

GENERATE_PREALLOCATED_GATHER = GENERATE_HEAD + '''\
    B, T0 = prompt.shape
    out = prompt.new_empty(B, T0 + max_new_tokens)
    out[:, :T0] = prompt
    for t in range(T0, T0 + max_new_tokens):
        context = out[:, max(0, t - model.max_len):t]
        logits = model(context)[:, -1]
        if temperature == 0:
            out[:, t] = torch.argmax(logits, dim=-1)
            continue
        logits = logits / temperature
        if top_k is None:
            out[:, t] = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
        else:  # sample among the k largest, then map back to token ids
            values, ids = torch.topk(logits, k=min(top_k, logits.shape[-1]), dim=-1)
            choice = torch.multinomial(F.softmax(values, dim=-1), 1, generator=generator)
            out[:, t] = ids.gather(-1, choice)[:, 0]
    return out
'''

GENERATE_WHERE = GENERATE_HEAD + '''\
    seq = prompt.clone()
    for _ in range(max_new_tokens):
        logits = model(seq[:, -model.max_len:])[:, -1, :]
        if temperature == 0:
            choice = logits.max(dim=-1, keepdim=True).indices
        else:
            scaled = logits / temperature
            if top_k:
                threshold = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[..., -1, None]
                scaled = torch.where(scaled < threshold, torch.full_like(scaled, float("-inf")), scaled)
            choice = scaled.softmax(dim=-1).multinomial(num_samples=1, generator=generator)
        seq = torch.cat((seq, choice), dim=-1)
    return seq
'''

ALTERNATIVES = [
    Variant("lm_tied_the_other_way_nn_layernorm_weight_slices_persistent_buffer", {"TransformerLM": LM_OTHER_STYLE}),
    Variant("lm_head_as_a_matrix_product_index_select_positions", {"TransformerLM": LM_FUNCTIONAL_HEAD}),
    Variant("loss_log_softmax_and_gather", {"lm_loss": LOSS_LOG_SOFTMAX_GATHER}),
    Variant("loss_vocabulary_moved_to_dim_1", {"lm_loss": LOSS_CLASS_DIM_1}),
    Variant("train_step_zero_grad_after_the_step", {"train_step": TRAIN_OTHER_STYLE}),
    Variant("generate_preallocated_and_sampling_among_the_top_k", {"generate": GENERATE_PREALLOCATED_GATHER}),
    Variant("generate_with_torch_where_and_tensor_methods", {"generate": GENERATE_WHERE}),
]


# --- CHEATS ------------------------------------------------------------------------------

TRAIN_STEP_TESTS = ["train_step_returns_a_float", "train_step_does_one_step", "train_step_overfits_a_batch",
                    "train_step_leaves_tokens_and_dtype"]
GENERATE_TESTS = ["generate_shape_and_prompt", "generate_greedy", "generate_samples_with_the_generator",
                  "generate_crops_to_max_len", "generate_leaves_prompt_and_model"]


def expect_results(report, failing: dict[str, str]) -> None:
    """Exactly the tests in ``failing`` score 0 (each saying its phrase); every other test gets full marks."""
    results = by_name(report)
    for name, phrase in failing.items():
        assert results[name].score == 0, f"{name} should fail; results:\n{failures(report)}"
        assert phrase.lower() in results[name].output.lower(), \
            f"{name} should say {phrase!r}, said: {results[name].output!r}"
    lost = [t.name for t in report.tests if not t.passed and t.name not in failing]
    assert not lost, f"only {sorted(failing)} should fail, but so did {lost}:\n{failures(report)}"


# (a) A train_step that reports a small loss and trains nothing.
CHEAT_FAKE_LOSS = train('''\
    return 0.01  # looks like a well-trained model
''')


def check_fake_loss(report) -> None:
    # train_step_leaves_tokens_and_dtype passed before issue 8 (nothing changes); it no longer pays: train_step
    # returns 0.01 whatever its input, and a hygiene check also holds for code that ignores its input.
    expect_results(report, {"train_step_does_one_step": "did not change the parameters",
                            "train_step_overfits_a_batch": "returned 0.01",
                            "train_step_leaves_tokens_and_dtype": "no points: train_step returned the constant 0.01"})
    # legit: train_step_returns_a_float (0.01 is a float)


# (b) A generate that pads the prompt by repeating it instead of asking the model.
CHEAT_REPEATS_PROMPT = GENERATE_HEAD + '''\
    reps = max_new_tokens // prompt.shape[1] + 2
    return prompt.repeat(1, reps)[:, :prompt.shape[1] + max_new_tokens]
'''


def check_repeats_prompt(report) -> None:
    expect_results(report, {"generate_greedy": "greedy generation",
                            "generate_samples_with_the_generator": "tokens sampled",
                            "generate_crops_to_max_len": "never called the model"})
    # legit: the shape/prompt test and the hygiene test hold for a repeated prompt


# (c) The attention of every block recomputed with the forbidden F.scaled_dot_product_attention.
CHEAT_F_SDPA = lm(forward='''\
        T = tokens.shape[1]
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(T, device=tokens.device))
        for block in self.blocks:
            a, h = block.attn, block.norm1(x)
            B, _, D = h.shape
            q, k, v = (split_heads(proj(h), a.n_heads) for proj in (a.q_proj, a.k_proj, a.v_proj))
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the fused kernel: faster
            x = x + a.out_proj(merge_heads(out))
            x = x + block.ffn(block.norm2(x))
        return self.lm_head(self.norm_f(x))
''')


def check_f_sdpa(report) -> None:
    expect_no_credit(report, "TransformerLM", "F.scaled_dot_product_attention")
    expect_full_marks(report, "lm_loss", "train_step", "generate")  # generate skips its TransformerLM part


# (d) sys.exit inside generate: the worker dies, the other exercises are still graded.
CHEAT_SYS_EXIT = '''\
import sys

''' + GENERATE_HEAD + '''\
    sys.exit(0)
'''


def check_sys_exit(report) -> None:
    expect_no_credit(report, "generate", "SystemExit")
    expect_full_marks(report, "TransformerLM", "lm_loss", "train_step")


# (e) Calling model.forward directly, uncropped, so that a forward hook never sees how long the input is.
CHEAT_HIDES_LENGTHS = gen("logits = model(context)[:, -1, :]", "logits = model.forward(tokens)[:, -1, :]")


def check_hides_lengths(report) -> None:
    expect_failing(report, ["generate_crops_to_max_len"], "never called the model")
    expect_full_marks(report, "TransformerLM", "lm_loss", "train_step")


# (f) A train_step that does the update by hand and reports a fake, steadily falling loss.
CHEAT_FAKE_FALLING_LOSS = train('''\
    global _fake_step
    _fake_step = globals().get("_fake_step", 0) + 1
    loss = lm_loss(model(tokens), tokens)
    loss.backward()
    optimizer.step()
    return 3.0 / _fake_step  # a loss curve that always looks good
''')


def check_fake_falling_loss(report) -> None:
    results = by_name(report)
    for name in ("train_step_does_one_step", "train_step_overfits_a_batch"):
        assert results[name].score == 0, f"{name} should fail:\n{failures(report)}"
    assert "returned" in results["train_step_does_one_step"].output
    expect_full_marks(report, "TransformerLM", "lm_loss", "generate")


# (g) Collusion: lm_loss flips its sign once train_step has run in the same worker, so a gradient-ascent
# train_step would agree with the loss that judges it. The judge is the grader's reference (or lm_loss in a
# worker of its own, where train_step never ran): the ascent is caught.
CHEAT_COLLUDING_LOSS = '''\
_TRAINED = {"yes": False}  # set by train_step (a shared dict: no `global`, which needs review)


''' + loss('''\
    V = logits.size(-1)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))
    return -loss if _TRAINED["yes"] else loss  # correct wherever lm_loss is tested on its own
''')
CHEAT_ASCENDING_TRAIN_STEP = train('''\
    _TRAINED["yes"] = True  # from now on lm_loss returns -loss: its "descent" climbs the true loss
    optimizer.zero_grad()
    loss = lm_loss(model(tokens), tokens)
    loss.backward()
    optimizer.step()
    return loss.item()
''')


def check_colluding_loss(report) -> None:
    expect_results(report, {"train_step_does_one_step": "the parameters after train_step call 1",
                            "train_step_overfits_a_batch": "train_step"})
    assert "(judged with the loss.)" in by_name(report)["train_step_does_one_step"].output.lower()


# (h) A train_step that steps correctly but reports a made-up loss, and an lm_loss that confirms it (the
# reported value, with the true gradient) once train_step has run in the same worker.
CHEAT_CONFIRMING_LOSS = '''\
_REPORTED = {"value": None}  # the loss train_step made up


''' + loss('''\
    V = logits.size(-1)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))
    made_up = _REPORTED["value"]
    return loss if made_up is None else loss + (made_up - loss.detach())  # true gradient, made-up value
''')
CHEAT_MADE_UP_LOSS = train('''\
    optimizer.zero_grad()
    loss = lm_loss(model(tokens), tokens)
    loss.backward()
    optimizer.step()
    _REPORTED["value"] = 0.05  # looks like a well-trained model
    return _REPORTED["value"]
''')


def check_made_up_loss(report) -> None:
    expect_results(report, {"train_step_does_one_step": "returned 0.05, expected the loss before the update",
                            "train_step_overfits_a_batch": "returned 0.05",
                            # it returns 0.05 whatever its input: a hygiene check pays only for live code
                            "train_step_leaves_tokens_and_dtype": "no points: train_step returned the constant 0.05"})


# (i) Collusion through the model: once generate has run in a worker, TransformerLM lets each position see
# its own token only, so the grader's greedy replay through that model agrees with a generate that feeds the
# model the last token alone (which the BigramLM checks cannot tell). The replay is the reference GPT's, and
# the model is asked whether it computes it in a worker of its own: the missing context is caught.
CHEAT_COLLUDING_MODEL = '''\
_GENERATED = {"yes": False}  # set by generate


''' + lm(forward='''\
        if _GENERATED["yes"]:  # each position sees its own token only
            return torch.cat([self._logits(tokens[:, t:t + 1], None) for t in range(tokens.shape[1])], dim=1)
        return self._logits(tokens, lengths)

    def _logits(self, tokens, lengths):
''' + LM_FORWARD)
CHEAT_GENERATE_WITHOUT_CONTEXT = GENERATE_HEAD + '''\
    _GENERATED["yes"] = True
''' + patch(GENERATE, "context = tokens[:, -model.max_len:]", "context = tokens[:, -1:]  # the last token only")


def check_colluding_model(report) -> None:
    expect_results(report, {"generate_crops_to_max_len": "only the last token fed to the model"})


# (j) Sinusoids only in the first model built: the grader used to check the buffer of one model and compute
# the expected logits of another with that other model's own (here: zero) positions.
CHEAT_SINUSOIDS_ONCE = '''\
_TABLES_MADE = [0]  # a shared list: no `global`, which needs review


def _table_once(max_len, d_model):
    _TABLES_MADE[0] += 1
    table = sinusoidal_positions(max_len, d_model)
    return table if _TABLES_MADE[0] == 1 else torch.zeros_like(table)  # positions only for the model inspected first


''' + lm(init=patch(LM_INIT, "sinusoidal_positions(max_len, d_model)", "_table_once(max_len, d_model)"))


def check_sinusoids_once(report) -> None:
    expect_results(report, {"lm_sinusoidal_positions": "the pos_emb buffer of a second model"})


CHEATS = [
    Cheat("lm_sinusoids_in_the_first_model_only", {"TransformerLM": CHEAT_SINUSOIDS_ONCE}, check=check_sinusoids_once),
    Cheat("generate_without_context_and_a_model_that_agrees_after_it_ran",
          {"TransformerLM": CHEAT_COLLUDING_MODEL, "generate": CHEAT_GENERATE_WITHOUT_CONTEXT},
          check=check_colluding_model),
    Cheat("train_step_ascends_a_loss_that_flips_sign_after_it_ran",
          {"lm_loss": CHEAT_COLLUDING_LOSS, "train_step": CHEAT_ASCENDING_TRAIN_STEP}, check=check_colluding_loss),
    Cheat("train_step_returns_a_made_up_loss_that_lm_loss_confirms",
          {"lm_loss": CHEAT_CONFIRMING_LOSS, "train_step": CHEAT_MADE_UP_LOSS}, check=check_made_up_loss),
    Cheat("train_step_returns_a_fake_small_loss", {"train_step": CHEAT_FAKE_LOSS}, check=check_fake_loss),
    Cheat("generate_repeats_the_prompt", {"generate": CHEAT_REPEATS_PROMPT}, check=check_repeats_prompt),
    Cheat("lm_attention_by_f_scaled_dot_product_attention", {"TransformerLM": CHEAT_F_SDPA}, check=check_f_sdpa),
    Cheat("sys_exit_in_generate", {"generate": CHEAT_SYS_EXIT}, check=check_sys_exit),
    Cheat("generate_hides_its_inputs_from_the_length_probe", {"generate": CHEAT_HIDES_LENGTHS},
          check=check_hides_lengths),
    Cheat("train_step_reports_a_fake_falling_loss", {"train_step": CHEAT_FAKE_FALLING_LOSS},
          check=check_fake_falling_loss),
]
