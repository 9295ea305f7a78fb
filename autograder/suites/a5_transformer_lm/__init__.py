"""Hidden suite for a5_transformer_lm: a GPT-style language model, its loss, a training step, generation.

Oracles are computed in float64 in the grader's process from the very weights loaded into the
student's model: a functional GPT (``F.layer_norm``, ``F.scaled_dot_product_attention`` with a
boolean causal mask, ``F.gelu``, ``F.linear``), ``F.cross_entropy`` on shifted targets, an SGD
step replayed on the gradient of that loss, and greedy or multinomial decoding replayed with a
``torch.Generator`` seeded like the one the student's ``generate`` gets.

``train_step`` and most ``generate`` checks use the notebook's given ``BigramLM`` (a lookup table of
next-token logits), so a bug in ``TransformerLM`` does not cost points there. ``train_step`` is judged
in the grader: its update and returned loss are replayed from the parameters read before and after it,
on the reference loss. Only when that fails and the student's ``lm_loss`` is wrong on random logits in
a worker of its own (never the worker that ran ``train_step``, whose code could change ``lm_loss`` after
the fact) is the step replayed on that ``lm_loss``, so a bug in the loss costs points in ``lm_loss``
only. The TransformerLM part of the generate checks is judged by the reference GPT's greedy decoding,
not by the student's model, and runs when that model, asked in a worker of its own, computes the
reference GPT.

References: Radford et al., "Improving Language Understanding by Generative Pre-Training" (2018) and
"Language Models are Unsupervised Multitask Learners" (2019); Vaswani et al. (2017); Press & Wolf,
"Using the Output Embedding to Improve Language Models" (2017).
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (exercise or None for any, message parts, hint).
ERROR_HINTS = [
    ("TransformerLM", ("index out of range in self",),
     "An embedding was indexed past its size: positions are torch.arange(T) (0 .. T-1), and pos_emb has max_len rows"),
    ("TransformerLM", ("must match the size of tensor", "The size of tensor a", "Expected size for first two dimensions"),
     ("Something was built for max_len positions and met a sequence of T = tokens.shape[1]: take the first T "
      "positions (pos_emb[:T], torch.arange(T)) and build the causal mask for T")),
    ("TransformerLM", ("unexpected keyword argument 'lengths'",),
     "forward takes an optional padding argument: def forward(self, tokens, lengths=None)"),
    ("lm_loss", ("Expected input batch_size", "Expected target size", "only batches of spatial targets"),
     ("F.cross_entropy wants logits of shape (N, V) and targets of shape (N,): flatten logits[:, :-1] to (-1, V) "
      "and tokens[:, 1:] to (-1,)")),
    ("lm_loss", ("view size is not compatible",),
     "logits[:, :-1] is not contiguous in memory: use .reshape(-1, V), not .view(-1, V)"),
    ("train_step", ("does not require grad",),
     "The loss has no graph: compute it from model(tokens) without torch.no_grad(), .detach() or .item()"),
    ("train_step", ("float' object has no attribute 'backward'",),
     "Call loss.backward() on the tensor and return loss.item() only at the end"),
    ("generate", ("probability tensor contains either",),
     ("torch.multinomial got NaN or inf probabilities: with temperature == 0 take the argmax instead of dividing by 0, "
      "and with top_k keep the k largest logits (at least one)")),
    ("generate", ("index out of range in self",),
     "The model was fed more positions than it has: crop the context to tokens[:, -model.max_len:] before each call"),
    ("generate", ("selected index k out of range",),
     "top_k may exceed the vocabulary: use torch.topk(logits, min(top_k, logits.size(-1)))"),
    ("generate", ("has no attribute 'max_len'",),
     "Every model here stores its context size as model.max_len (TransformerLM must set self.max_len = max_len)"),
    # On a GPU, "index out of range in self" and "probability tensor contains ..." are device-side asserts instead.
    ("TransformerLM", ("device-side assert triggered",),
     "A GPU kernel rejected an index: an embedding indexed past its size? Positions are torch.arange(T) (0 .. T-1)"),
    ("generate", ("device-side assert triggered",),
     ("A GPU kernel rejected its input: the model fed more than max_len positions (crop to tokens[:, -model.max_len:]), "
      "or torch.multinomial given NaN or inf probabilities (with temperature == 0 take the argmax)")),
    (None, ("same dtype", "expected scalar type", "expected m1 and m2 to have the same dtype"),
     "float32 and float64 tensors were mixed: is something cast with .float(), or created without dtype=?"),
]

ASSIGNMENT = Assignment('a5_transformer_lm', notebook='transformer_lm.ipynb', exercises=["TransformerLM", "lm_loss", "train_step", "generate"], error_hints=ERROR_HINTS)
