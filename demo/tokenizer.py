"""Byte-level BPE tokenizer for the tiny embedded base model, with the project's chat template.

Byte-level BPE so that any unicode string round-trips exactly (no <unk>), and so the tokenizer
behaves like the GPT-2/Llama-3/Qwen tokenizers a researcher would bring instead: every later
stage only sees an ordinary `PreTrainedTokenizerFast` saved in a model directory.
"""
from __future__ import annotations

# Document separator for pretraining; never produced by the chat template.
EOT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOT, IM_START, IM_END, PAD]

# ChatML. The assistant turn ends with <|im_end|> and nothing after it, so "EOS appended to every
# completion" and "generation stops at EOS" are the same token. `{% generation %}` marks the
# assistant content + EOS for `return_assistant_tokens_mask` (loss on completions only).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}"
    "{%- else -%}"
    "{{ message['content'] }}<|im_end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "<|im_start|>assistant\n"
    "{% endif -%}"
)


def render_chat(messages: list[dict]) -> str:
    """What CHAT_TEMPLATE renders for `messages` (no generation prompt), without jinja: the
    corpus writes its chat transcripts in this form (tests check it equals the template's)."""
    return "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}" for m in messages)


def train_tokenizer(texts: list[str], vocab_size: int = 4096, model_max_length: int = 512):
    """Train a byte-level BPE on `texts` and wrap it as a HF fast tokenizer (PreTrainedTokenizerFast).

    Deterministic: the same texts in the same order give the same vocabulary and merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: a prefix space would make decode(encode(s)) != s.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # trim_offsets=False keeps character offsets exact; the assistant-mask lookup relies on them.
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,  # ids 0..3, in this order
        # All 256 bytes are in the vocab even if absent from the corpus: nothing is ever unknown.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,  # distinct from EOS, so EOS labels are never masked as padding
        bos_token=None,  # no BOS at all: no double-BOS from template + tokenizer
        unk_token=None,
        additional_special_tokens=[EOT, IM_START],
        padding_side="right",  # training pads right; generation code switches to left
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,  # would break exact round-trips (" ." -> ".")
    )
