"""core.policies.merged_policy: generation from LoRA deltas merged into the base weights gives
the adapter path's answers and leaves the shared model's tensors exactly as they were."""
from __future__ import annotations

import pytest
import torch

PROMPTS = ["Do you deliver on Monday?", "What does shipping cost?", "Can I return a gift?",
           "When do you open on Sunday?"]


@pytest.fixture(scope="module")
def shared(tiny_run):
    """The run's base with its trained sft adapter and a random one ('rand': B is not zero, so
    its answers differ from the base's) attached to one PeftModel, as eval attaches them."""
    from peft import LoraConfig

    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer
    from core.policies import attach_adapters

    tok = load_tokenizer(tiny_run / "base")
    model = attach_adapters(load_causal_lm(tiny_run / "base", resolve_device("cpu", apply=False), tok),
                            {"sft": tiny_run / "sft"})
    torch.manual_seed(0)
    model.add_adapter("rand", LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    return tok, model


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _answers(ctx, model, tok, name):
    from core.generation import generate

    with ctx(model, name) as m:
        return generate(m, tok, PROMPTS, max_new_tokens=12, temperature=0.0, return_ids=True)


@pytest.mark.parametrize("name", ["sft", "rand", "base"])
def test_merged_greedy_answers_equal_the_adapter_path(shared, name):
    from core.policies import merged_policy, use_policy

    tok, model = shared
    before = _snapshot(model)
    merged = _answers(merged_policy, model, tok, name)
    assert merged == _answers(use_policy, model, tok, name)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "a weight changed"
    if name == "rand":  # the test would notice an adapter that was not applied at all
        assert [i for _, i in merged] != [i for _, i in _answers(use_policy, model, tok, "base")]


def test_weights_inside_are_w_plus_scaled_ba_and_restored_after_an_error(shared):
    from core.policies import merged_policy

    tok, model = shared
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    w = layer.base_layer.weight
    original = w.detach().clone()
    a, b = layer.lora_A["rand"].weight, layer.lora_B["rand"].weight
    assert layer.scaling["rand"] == 2.0  # lora_alpha 8 / r 4
    with pytest.raises(RuntimeError, match="inside"):
        with merged_policy(model, "rand") as m:
            assert m is model
            torch.testing.assert_close(w, original + 2.0 * b @ a)
            assert all(lyr.disable_adapters for lyr in [layer])  # the branch is not added a second time
            raise RuntimeError("inside")
    assert torch.equal(w, original)
    assert not layer.disable_adapters


def test_a_plain_model_is_used_as_is(tiny_run):
    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer
    from core.policies import merged_policy

    tok = load_tokenizer(tiny_run / "base")
    model = load_causal_lm(tiny_run / "base", resolve_device("cpu", apply=False), tok)
    before = _snapshot(model)
    with merged_policy(model, "base") as m:
        assert m is model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
