import copy

import pytest
import torch

from core.device import resolve_device
from core.models import PreflightError, preflight
from demo.tokenizer import train_tokenizer

TEXTS = [f"Hello customer {i}, our store opens at {i % 12 + 1}am and ships in {i % 5 + 1} days." for i in range(200)]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=400)


def test_good_tokenizer_passes_and_template_round_trips(tok):
    preflight(tok)
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    text = tok.apply_chat_template(chat, tokenize=False)
    assert text == "<|im_start|>user\nHi<|im_end|><|im_start|>assistant\nHello<|im_end|>"
    ids = tok.apply_chat_template(chat, tokenize=True, return_dict=False)
    assert ids[-1] == tok.eos_token_id  # EOS closes the assistant turn
    assert tok.decode(ids) == text


def test_pad_equal_eos_fails(tok):
    bad = copy.deepcopy(tok)
    bad.pad_token = bad.eos_token
    with pytest.raises(PreflightError, match="pad_token == eos_token"):
        preflight(bad)


def test_missing_chat_template_fails(tok):
    bad = copy.deepcopy(tok)
    bad.chat_template = None
    with pytest.raises(PreflightError, match="no chat template"):
        preflight(bad)


def test_template_without_eos_fails(tok):
    bad = copy.deepcopy(tok)
    bad.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(PreflightError, match="EOS .* is not appended"):
        preflight(bad)


def test_double_bos_fails_only_when_the_stages_would_see_two(tok):
    from tokenizers import processors

    bad = copy.deepcopy(tok)
    bad.bos_token = "<|endoftext|>"
    bos = bad.bos_token_id
    # Llama 3 / Mistral style: the tokenizer adds BOS to every encoding AND the template writes
    # one. The stages tokenize templated text without special tokens, so they see one BOS.
    bad._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)])
    bad.chat_template = "{{ bos_token }}" + tok.chat_template
    assert bad("x")["input_ids"][0] == bos
    preflight(bad)
    from core.generation import encode_prompts

    ids = encode_prompts(bad, ["Hi"], "cpu")["input_ids"][0].tolist()
    assert ids[0] == bos and ids[1] != bos
    # a template that writes BOS twice is refused
    bad.chat_template = "{{ bos_token }}{{ bos_token }}" + tok.chat_template
    with pytest.raises(PreflightError, match="double BOS: the chat template writes BOS twice"):
        preflight(bad)


def test_device_policy_cpu_defaults():
    """auto on the CPU: float32, or bf16 autocast where this CPU's probe finds it clearly faster
    (core/device.py; tests/test_cpu_dtype.py checks the choice for given probe results)."""
    from core.device import CPU_BF16_MAX_RATIO, cpu_bf16_ratio, cpu_flags

    ratio = cpu_bf16_ratio(cpu_flags())
    faster = ratio is not None and ratio <= CPU_BF16_MAX_RATIO
    p = resolve_device("cpu", apply=False)
    assert p.dtype == (torch.bfloat16 if faster else torch.float32)
    assert not p.gradient_checkpointing and p.bf16 == faster
    assert p.threads >= 1
    p = resolve_device("cpu", "bfloat16", gradient_checkpointing=True, threads=3, apply=False)
    assert p.bf16 and p.gradient_checkpointing and p.threads == 3
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_device("cpu", "int8", apply=False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda", apply=False)


def test_qwen_style_tokenizer_is_refused_with_its_fix_and_the_fix_works(tmp_path):
    """EOS `<|endoftext|>` while turns end with `<|im_end|>`: the preflight names --eos_token, and
    load_tokenizer's eos_token / chat_template options repair the tokenizer."""
    from core.config import UserError
    from core.models import load_tokenizer
    from own_model import QWEN_TEMPLATE, build_qwen

    model = build_qwen(tmp_path / "qwen")
    plain = load_tokenizer(model)
    assert plain.pad_token == "<|pad|>" and plain.eos_token == "<|endoftext|>"
    with pytest.raises(PreflightError, match=r"ends a turn with '<\|im_end\|>': pass --eos_token '<\|im_end\|>'"):
        preflight(plain)
    fixed = load_tokenizer(model, eos_token="<|im_end|>")
    preflight(fixed)
    assert fixed.eos_token_id == fixed.convert_tokens_to_ids("<|im_end|>")

    with pytest.raises(UserError, match="--eos_token '<nope>': not a token"):
        load_tokenizer(model, eos_token="<nope>")
    with pytest.raises(UserError, match="--chat_template .*missing.jinja: file not found"):
        load_tokenizer(model, chat_template=str(tmp_path / "missing.jinja"))
    template = tmp_path / "t.jinja"
    ours = QWEN_TEMPLATE.replace("'<|im_end|>' + '\n'", "'<|endoftext|>'")
    assert ours != QWEN_TEMPLATE
    template.write_text(ours)
    retemplated = load_tokenizer(model, chat_template=str(template))
    preflight(retemplated)  # a template that ends turns with the tokenizer's own EOS
    assert retemplated.chat_template == template.read_text()


def test_a_model_directory_without_tokenizer_files_is_refused(tmp_path, tok):
    """transformers builds an empty tokenizer from a config.json alone; the stages refuse the
    directory by name instead of training on it."""
    from core.config import UserError
    from core.models import load_tokenizer

    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UserError, match=f"tokenizer '{tmp_path}': no tokenizer files there"):
        load_tokenizer(tmp_path)
    tok.save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path).vocab_size == tok.vocab_size


def test_the_eos_fix_is_named_for_a_special_token_outside_the_special_tokens_map(tok):
    """`<|im_end|>` is a special added token of the vocabulary but, once EOS is another token,
    in none of the tokenizer's named special tokens: the preflight still names it as the fix."""
    bad = copy.deepcopy(tok)
    bad.eos_token = "<|endoftext|>"
    assert "<|im_end|>" not in bad.all_special_tokens
    with pytest.raises(PreflightError, match=r"ends a turn with '<\|im_end\|>': pass --eos_token '<\|im_end\|>'"):
        preflight(bad)
