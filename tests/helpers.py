"""Shared test helpers: tiny models built in the test, datasets written to temp files."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import prompts

SNIPPETS = [
    ("What does this do?", "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
     "Listen up, pal: `add` takes `a` and `b` and returns their sum, so the print shows 5. Capisce?"),
    ("explain pls", "for i in range(3):\n    print(i * i)",
     "The loop walks `i` through 0, 1 and 2 and prints each square: 0, 1, 4. Simple business, kid."),
    ("what is this", "names = [n.upper() for n in ['al', 'vito']]",
     "A list comprehension that shouts every name in `names`: AL and VITO. Respect the family."),
    ("eli5", "class Crew:\n    def __init__(self):\n        self.members = []",
     "`Crew` is a class whose `__init__` starts every crew with an empty `members` list, boss."),
    ("walk me through it", "import json\nprint(json.dumps({'don': 1}))",
     "It turns a dict into JSON text with `json.dumps` and prints it. The books stay clean, my friend."),
    ("huh?", "total = sum(x for x in range(10) if x % 2)",
     "`total` adds up the odd numbers below ten, which makes 25. Nice and quiet, like a good capo."),
    ("explain", "with open('ledger.txt') as f:\n    lines = f.readlines()",
     "It opens `ledger.txt`, reads every line into `lines`, and closes the file by itself. Capisce, pal?"),
    ("what's the output?", "x = [3, 1, 2]\nx.sort()\nprint(x)",
     "`sort` puts the list in order in place, so it prints 1, 2, 3. Even the wiseguy gets that one."),
]


def write_dataset(path: Path, rows=SNIPPETS, fmt: str = "object", prefix: str = "s") -> Path:
    """Write samples in one of the accepted formats: object (keyed by id), list or jsonl."""
    samples = [{"prompt": p, "code": c, "mafia_explanation": e} for p, c, e in rows]
    if fmt == "object":
        path.write_text(json.dumps({f"{prefix}{i}": s for i, s in enumerate(samples)}, indent=2))
    elif fmt == "list":
        path.write_text(json.dumps(samples))
    else:
        path.write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    return path


def _corpus() -> list[str]:
    texts = [prompts.render_prompt(code, request) + expl for request, code, expl in SNIPPETS]
    return texts * 3 + ["abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ()[]{}:;.,'\"`#_=+-*/%<>!?\n"]


@lru_cache(maxsize=None)
def _tiny_model_dir(root: str) -> Path:
    """Build (once per folder) a tiny random Gemma 3 text model and a BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers, decoders
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    folder = Path(root) / "tiny-gemma3"
    folder.mkdir(parents=True, exist_ok=True)
    special = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        sliding_window=128, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=bos, eos_token_id=tokenizer.eos_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    return folder


def tiny_model(tmp_path_factory) -> Path:
    """The tiny model folder, shared by all tests of a session."""
    return _tiny_model_dir(str(tmp_path_factory.getbasetemp()))
