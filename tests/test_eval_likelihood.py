"""core/likelihood.py and eval/likelihood.py against values computed by hand, with a model whose
next-token distribution is fixed (the same at every position), so every log-prob is known."""
import math
from types import SimpleNamespace

import pytest
import torch

from core.likelihood import _pad, encode_chat_rows, position_nll, scored_logps
from eval.likelihood import completion_perplexity, kl_per_response, text_perplexity


class FixedModel(torch.nn.Module):
    """Logits = log p at every position, for a fixed distribution p over the vocabulary."""

    def __init__(self, probs):
        super().__init__()
        self.logp = torch.nn.Parameter(torch.tensor(probs).log(), requires_grad=False)

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        return SimpleNamespace(logits=self.logp.expand(b, t, -1).clone())


def test_pad_scores_only_the_target_tokens():
    ids, attn, scored = _pad([([5, 6], [7]), ([5], [8, 9])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [5, 8, 9]]
    assert attn.tolist() == [[1, 1, 1], [1, 1, 1]]
    # labels = ids[:, 1:]: row 0 scores 7 (label index 1), row 1 scores 8 and 9 (0 and 1)
    assert scored.tolist() == [[0, 1], [1, 1]]
    ids, attn, scored = _pad([([5], [7]), ([5, 6, 6], [8])], pad_id=0)
    assert ids[0].tolist() == [5, 7, 0, 0] and attn[0].tolist() == [1, 1, 0, 0]
    assert scored.tolist() == [[1, 0, 0], [0, 0, 1]]


def test_scored_logps_and_perplexity_by_hand():
    probs = [0.1, 0.2, 0.3, 0.4]
    model = FixedModel(probs)
    (a, b) = scored_logps(model, [([0], [1, 2]), ([3, 3], [3])], pad_id=0)
    assert torch.allclose(a, torch.tensor([math.log(0.2), math.log(0.3)]))
    assert torch.allclose(b, torch.tensor([math.log(0.4)]))
    # at temperature 2 the distribution is softmax(log p / 2) ∝ sqrt(p)
    (c,) = scored_logps(model, [([0], [3])], pad_id=0, temperature=2.0)
    z = sum(math.sqrt(p) for p in probs)
    assert c.item() == pytest.approx(math.log(math.sqrt(0.4) / z), rel=1e-5)

    tok = _ListTokenizer()
    ppl = text_perplexity(model, tok, ["1 2", "3 3 3"])  # first token of each is context only
    want = math.exp(-(math.log(0.3) + math.log(0.4) + math.log(0.4)) / 3)
    assert ppl == pytest.approx(want, rel=1e-5)


class _ListTokenizer:
    """'1 2 3' → [1, 2, 3]: a tokenizer whose ids are the numbers written."""
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [int(w) for w in text.split()]}


def test_kl_per_response():
    p = [torch.tensor([-0.1, -0.2]), torch.tensor([-1.0])]
    q = [torch.tensor([-0.3, -0.2]), torch.tensor([-0.5])]
    # ((-0.1 + 0.3) + (-0.2 + 0.2) + (-1.0 + 0.5)) / 2 responses
    assert kl_per_response(p, q) == pytest.approx((0.2 + 0.0 - 0.5) / 2)
    assert math.isnan(kl_per_response([], []))
    with pytest.raises(ValueError):
        kl_per_response(p, q[:1])


def test_completion_perplexity_scores_the_completion_only(tiny_base):
    from core.models import load_tokenizer

    tok = load_tokenizer(tiny_base)
    rows = [{"prompt": "When are you open?", "completion": "Nine to five."}]
    ((ctx, tgt),) = encode_chat_rows(tok, rows)
    full = tok.apply_chat_template([{"role": "user", "content": rows[0]["prompt"]},
                                    {"role": "assistant", "content": rows[0]["completion"]}], tokenize=False)
    assert tok.decode(ctx + tgt) == full and tgt[-1] == tok.eos_token_id  # EOS is scored
    assert "Nine" in tok.decode(tgt) and "open" not in tok.decode(tgt)
    vocab = len(tok)
    uniform = FixedModel([1.0 / vocab] * vocab)
    assert completion_perplexity(uniform, tok, rows) == pytest.approx(vocab, rel=1e-4)
    # a model sure of one token: perplexity = exp(mean NLL) over exactly the completion's tokens
    probs = [0.5 / (vocab - 1)] * vocab
    probs[tgt[0]] = 0.5
    want = math.exp(-sum(math.log(probs[t]) for t in tgt) / len(tgt))
    assert completion_perplexity(FixedModel(probs), tok, rows) == pytest.approx(want, rel=1e-4)


def test_position_nll_by_hand():
    rows = [torch.tensor([-1.0, -0.5, -0.2]), torch.tensor([-3.0, -0.1]), torch.tensor([-0.4, -0.6, -0.8, -0.9])]
    got = position_nll(rows)
    assert got["first"] == pytest.approx((1.0 + 3.0 + 0.4) / 3)
    assert got["eos"] == pytest.approx((0.2 + 0.1 + 0.9) / 3)
    assert got["other"] == pytest.approx((0.5 + 0.6 + 0.8) / 3)  # over the middle tokens, not per row
    one = position_nll([torch.tensor([-2.0])])
    assert one["first"] == one["eos"] == pytest.approx(2.0) and math.isnan(one["other"])
    assert all(math.isnan(v) for v in position_nll([]).values())

