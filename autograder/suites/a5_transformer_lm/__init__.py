"""Hidden suite for a5_transformer_lm: a GPT-style language model, its loss, a training step, generation.

    test_transformer_lm.py   TransformerLM: structure, logits, positions, causality, padding, init, tying, gradients
    test_lm_loss.py          lm_loss: the shifted next-token cross-entropy
    test_train_step.py       train_step: one optimisation step, replayed in the grader (and who judges it)
    test_generate.py         generate: greedy decoding, seeded sampling with temperature and top-k, cropping
    inputs.py                seeded tokens, TransformerLM configurations and weights, the given BigramLM
    sampling.py              the right answers of generate: greedy decoding and the seeded sampling replay

Every expected value is computed in float64 in the grader's process: the model and its loss by
``autograder/reference.py`` (from the very weights loaded into the student's model), the loss cross-checked
against ``F.cross_entropy``; a training step by an SGD step replayed on the gradient of the reference loss;
decoding by ``sampling.py``. Known-wrong answers, named in feedback, are in
``autograder/known_bugs/a5_transformer_lm.py``. ``train_step`` and most ``generate`` checks use the notebook's
given ``BigramLM`` (a lookup table of next-token logits), so a bug in ``TransformerLM`` does not cost points there.

References: Radford et al., "Improving Language Understanding by Generative Pre-Training" (2018) and
"Language Models are Unsupervised Multitask Learners" (2019); Vaswani et al. (2017); Press & Wolf,
"Using the Output Embedding to Improve Language Models" (2017); Fan, Lewis & Dauphin, "Hierarchical Neural Story
Generation" (2018).
"""

from autograder.hidden import Assignment

# Likely causes of errors raised inside the student's code: (exercise or None for any, message parts, hint).
ERROR_HINTS = [
    ("TransformerLM", ("index out of range in self",),
     "An embedding was indexed past its size: positions are torch.arange(T) (0 .. T-1), and pos_emb has max_len rows"),
    ("TransformerLM",
     ("must match the size of tensor", "The size of tensor a", "Expected size for first two dimensions"),
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
     ("A GPU kernel rejected its input: the model fed more than max_len positions (crop to "
      "tokens[:, -model.max_len:]), or torch.multinomial given NaN or inf probabilities (with temperature == 0 take "
      "the argmax)")),
    (None, ("same dtype", "expected scalar type", "expected m1 and m2 to have the same dtype"),
     "float32 and float64 tensors were mixed: is something cast with .float(), or created without dtype=?"),
]

ASSIGNMENT = Assignment("a5_transformer_lm", notebook="transformer_lm.ipynb",
                        exercises=["TransformerLM", "lm_loss", "train_step", "generate"], error_hints=ERROR_HINTS,
                        judges=["lm_loss"])
