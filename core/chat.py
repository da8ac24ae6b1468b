"""`rlhf chat`: talk to a policy of a run in the terminal, tokens streamed as they are generated."""
from __future__ import annotations

from core.config import ChatConfig, tokenizer_fixes
from core.device import policy_from_config
from core.generation import encode_prompts
from core.models import load_policy, load_tokenizer
from core.policies import adapter_stages, policy_files


def main(cfg: ChatConfig, read=input) -> None:
    import torch
    from transformers import TextStreamer

    device = policy_from_config(cfg)
    base, tokenizer, adapter = policy_files(cfg.run, cfg.policy)
    tok = load_tokenizer(tokenizer, **tokenizer_fixes(cfg))
    model = load_policy(base, device, tok, adapter=adapter)
    model.eval()
    streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    history = [{"role": "system", "content": cfg.system}] if cfg.system else []
    which = f"'{cfg.policy}' of {cfg.run}" if cfg.policy in ("base", *adapter_stages()) else f"{adapter} on {base}"
    print(f"Chatting with {which}. Empty line or Ctrl-D to quit; /reset clears history.")
    while True:
        try:
            text = read("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        if text == "/reset":
            history = history[:1] if cfg.system else []
            continue
        history.append({"role": "user", "content": text})
        enc = encode_prompts(tok, [history], device.device)
        print("bot> ", end="", flush=True)
        sampling = (dict(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p) if cfg.temperature > 0
                    else dict(do_sample=False))
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, streamer=streamer,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **sampling)
        reply = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        history.append({"role": "assistant", "content": reply})
