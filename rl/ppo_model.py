"""Policy, reference and value function of PPO on ONE copy of the base weights.

    base weights (frozen, one copy)
      ├── LoRA "policy"  the SFT adapter, loaded trainable      → π_θ
      ├── LoRA "ref"     the SFT adapter again, frozen          → π_ref (= the SFT policy, exactly)
      └── LoRA "value"   a fresh adapter, trainable + a linear head on the last hidden state → V
                         (PPO only: RLOO builds the model with value=False, policy and reference)

Choices, and why:
- Reference = a frozen second copy of the SFT adapter rather than "the base with adapters
  disabled": the reference must be the SFT policy, and a LoRA adapter is small (r=16: 9% of the
  4.8M-parameter demo base, well under 1% of a billion-parameter one), so the copy is cheap and
  needs no bookkeeping of the initial weights.
- Value = its own adapter + head on the same base, rather than a head on the policy's hidden
  states (the value loss would then pull on the policy's weights; TRL's PPOv2 and OpenRLHF keep
  the critic separate too) and rather than a separate small critic (a second model and tokenizer
  to keep in step, and no shared base). Its price is one extra trunk forward/backward per
  minibatch, which the plain-loop baseline in bench/ppo_throughput.py pays too.
- The adapter is switched per forward pass. PEFT's set_adapter also flips requires_grad (the
  active adapter trainable, the others frozen); `use` pins the flags back, so the policy and
  value adapters stay trainable whichever is active and DDP sees a fixed set of parameters.
- The model stays in eval mode (LoRA dropout off) while it trains: with dropout on, the first
  minibatch's ratio π/π_old would already differ from 1 (Huang et al. 2024 disable dropout).
  With gradient checkpointing (GPU, on request) it is in train mode with every dropout at 0.

Measured memory (bench/ppo_throughput.py; demo-size Llama 256 wide x 6 layers, 4096 vocab, LoRA
r=16, CPU fp32, batch 16, 64 new tokens, minibatch 8): parameter bytes of policy + reference +
value = 1.17x the policy alone (three model copies: 3.0x); peak RSS of one whole PPO iteration
(sample, 3 scoring passes, 2 epochs of updates) 159 MB above the imports vs 147 MB for the same
work with the policy alone = 1.08x (goal <= 1.3x). The update runs backward after the policy
pass and again after the value pass (rl.ppo.ppo_update): with one graph for both, the two
passes' activations coexist and a minibatch step peaked at 236 MB instead of 145 MB (~1.6x).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

POLICY, REF, VALUE = "policy", "ref", "value"
VALUE_HEAD_FILE = "value_head.safetensors"


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, as `generate` computes them for left-padded rows:
    without them a left-padded prompt gets shifted positions and the recomputed log-probs differ
    from the ones the tokens were sampled with.  (B, L) → (B, L)."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


class ActorCritic(nn.Module):
    """A PeftModel with the three adapters above and the value head; forward() is the training
    pass of the policy or of the value function (see rl.ppo.ppo_update for why separately)."""

    def __init__(self, peft_model, value_head: nn.Linear | None):
        super().__init__()
        self.peft = peft_model
        self.value_head = value_head
        self._pinned = [(p, self._trainable(n)) for n, p in self.named_parameters()
                        if "lora_" in n or n.startswith("value_head")]
        for p, trainable in self._pinned:
            p.requires_grad_(trainable)

    @staticmethod
    def _trainable(name: str) -> bool:
        return name.startswith("value_head") or f".{POLICY}." in name or f".{VALUE}." in name

    @property
    def lm(self):
        return self.peft.get_base_model()  # the causal LM, LoRA layers injected in place

    def use(self, adapter: str) -> None:
        self.peft.set_adapter(adapter, inference_mode=True)
        for p, trainable in self._pinned:  # undo PEFT's requires_grad flips
            p.requires_grad_(trainable)

    def logits(self, input_ids, attention_mask, position_ids, n_response: int, adapter: str = POLICY):
        """Logits that predict the last n_response tokens: (B, R, V). Only those R positions go
        through the LM head (logits_to_keep), not the prompt's."""
        self.use(adapter)
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      logits_to_keep=n_response + 1, use_cache=False)
        return out.logits[:, :-1]

    def values(self, input_ids, attention_mask, position_ids, n_response: int):
        """V(s_t) before each of the last n_response tokens: (B, R), float32. The trunk runs
        without the LM head (a value needs no vocabulary projection)."""
        self.use(VALUE)
        trunk = getattr(self.lm, self.lm.base_model_prefix)
        hidden = trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=False).last_hidden_state  # (B, L, H)
        hidden = hidden[:, -(n_response + 1):-1]  # (B, R, H)
        return self.value_head(hidden.float()).squeeze(-1)

    def forward(self, input_ids, attention_mask, position_ids, n_response: int, part: str = POLICY):
        """The training pass of one part: policy logits (B, R, V) or values (B, R). The caller
        runs backward after each, so the two passes' activations are never alive together."""
        if part == POLICY:
            return self.logits(input_ids, attention_mask, position_ids, n_response)
        return self.values(input_ids, attention_mask, position_ids, n_response)

    @torch.no_grad()
    def generate(self, **kwargs):
        self.use(POLICY)
        was_training = self.training
        self.eval()  # in train mode transformers turns the KV cache off under checkpointing
        try:
            return self.peft.generate(**kwargs)
        finally:
            self.train(was_training)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor by name (policy LoRA, value LoRA, value head): a checkpoint."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
        for n, t in state.items():
            params[n].copy_(t)


def build_actor_critic(base_path: str | Path, sft_path: str | Path, tok, device_policy, value_lora,
                       seed: int = 0, load_in_4bit: bool = False, value: bool = True,
                       init_path: str | Path | None = None) -> ActorCritic:
    """Base (one copy) + the SFT adapter twice (policy, ref) + a fresh value adapter and head
    (value=False: none, for algorithms without a critic). init_path: the policy starts from this
    adapter instead (a previous round's policy; it must have the SFT adapter's shape), the
    reference stays SFT. Gradient checkpointing as the device policy says (see `checkpointing`)."""
    from peft import PeftModel

    from core.models import load_causal_lm, pin_base_path

    base = load_causal_lm(base_path, device_policy, tok, load_in_4bit=load_in_4bit)
    peft = PeftModel.from_pretrained(base, str(init_path or sft_path), adapter_name=POLICY, is_trainable=True)
    peft.load_adapter(str(sft_path), adapter_name=REF, is_trainable=False)
    head = None
    if value:
        torch.manual_seed(seed)  # the value adapter's and head's initialisation
        peft.add_adapter(VALUE, value_lora)
        hidden = base.config.get_text_config().hidden_size
        head = nn.Linear(hidden, 1)
        nn.init.normal_(head.weight, std=1 / (hidden + 1))  # small: values start near 0 (as OpenRLHF)
        nn.init.zeros_(head.bias)
        head = head.to(device=next(base.parameters()).device, dtype=torch.float32)
    pin_base_path(peft, base_path)  # the saved policy and value adapters name the base absolutely
    ac = ActorCritic(peft, head)
    if device_policy.gradient_checkpointing:
        return checkpointing(ac)
    return ac.eval()  # eval mode throughout: no dropout (see the module docstring)


def checkpointing(ac: ActorCritic) -> ActorCritic:
    """transformers checkpoints activations only in train mode; train mode with every dropout at
    p = 0 computes what eval mode does. (`generate` switches to eval: the KV cache stays on.)"""
    for m in ac.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    ac.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return ac.train()


def _save_adapter(ac: ActorCritic, adapter: str, out: Path) -> None:
    """PEFT writes a non-default adapter into <dir>/<name>/; move its files to `out` itself so
    `PeftModel.from_pretrained(base, out)` loads it."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        ac.peft.save_pretrained(tmp, selected_adapters=[adapter])
        for f in (Path(tmp) / adapter).iterdir():
            os.replace(f, out / f.name)


def save_policy_and_value(ac: ActorCritic, out: Path) -> None:
    """The policy adapter at the top of `out` (eval and export find it there), the value adapter
    and head under out/value/ (when the model has them)."""
    from safetensors.torch import save_file

    _save_adapter(ac, POLICY, out)
    if ac.value_head is None:
        return
    _save_adapter(ac, VALUE, out / "value")
    save_file({k: v.contiguous() for k, v in ac.value_head.state_dict().items()},
              str(out / "value" / VALUE_HEAD_FILE))


def memory_report(ac: ActorCritic) -> dict[str, int]:
    """Parameter bytes of the shared base, of each adapter and of the head."""
    out = {"base": 0, POLICY: 0, REF: 0, VALUE: 0, "value_head": 0}
    for n, p in ac.named_parameters():
        size = p.numel() * p.element_size()
        if n.startswith("value_head"):
            out["value_head"] += size
        elif "lora_" in n:
            out[next(a for a in (POLICY, REF, VALUE) if f".{a}." in n)] += size
        else:
            out["base"] += size
    policy_alone = out["base"] + out[POLICY]
    out["ratio_vs_policy_alone"] = round(sum(out.values()) / policy_alone, 4)
    return out
