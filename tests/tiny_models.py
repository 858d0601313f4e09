"""Tiny random models (Gemma 3 text, Qwen2) with BPE tokenizers trained on the sample snippets, built in the test
session; tests/conftest.py serves them as the ``tiny_model_dir`` and ``tiny_qwen_dir`` fixtures."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from mafioso import prompts
from tests.helpers import SNIPPETS


def _corpus() -> list[str]:
    texts = [prompts.render_prompt(code, request) + expl for request, code, expl in SNIPPETS]
    return texts * 3 + ["abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ()[]{}:;.,'\"`#_=+-*/%<>!?\n"]


def _tokenizer(special: list[str], bos: str | None, eos: str, pad: str):
    """A small byte-level BPE tokenizer trained on the prompt corpus; ``bos`` (if any) starts every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   unk_token="<unk>")


@lru_cache(maxsize=None)
def _tiny_model_dir(root: str) -> Path:
    """Build (once per folder) a tiny random Gemma 3 text model and a BPE tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    folder = Path(root) / "tiny-gemma3"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(["<pad>", "<eos>", "<bos>", "<unk>"], bos="<bos>", eos="<eos>", pad="<pad>")
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        sliding_window=128, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    return folder


@lru_cache(maxsize=None)
def _tiny_qwen_dir(root: str) -> Path:
    """Build (once per folder) a tiny random Qwen2 model with Qwen's special tokens: no BOS, EOS ``<|im_end|>``,
    pad ``<|endoftext|>``, and a generation config that stops on both (as the converted Qwen2.5-Coder does).
    Its shapes equal the tiny Gemma's, so only the architecture tells their adapters apart."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    folder = Path(root) / "tiny-qwen2"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"], bos=None,
                           eos="<|im_end|>", pad="<|endoftext|>")
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id])
    model.save_pretrained(folder)
    return folder


def tiny_model(tmp_path_factory) -> Path:
    """The tiny model folder, shared by all tests of a session."""
    return _tiny_model_dir(str(tmp_path_factory.getbasetemp()))


def tiny_qwen_model(tmp_path_factory) -> Path:
    """The tiny Qwen2 model folder, shared by all tests of a session."""
    return _tiny_qwen_dir(str(tmp_path_factory.getbasetemp()))


def tiny_gemma_dir(root: str, flip_norm: bool = False) -> Path:
    """The tiny Gemma 3 folder under ``root`` (benches build one outside a test session); ``flip_norm``: the final
    norm's weight gets random signs, as bench_worker's ``--random-weights`` does, so greedy answers are noise that
    runs its full length instead of a loop."""
    folder = _tiny_model_dir(root)
    if flip_norm:
        import torch
        from transformers import Gemma3ForCausalLM

        model = Gemma3ForCausalLM.from_pretrained(folder)
        torch.manual_seed(0)
        with torch.no_grad():  # Gemma's norm scales by 1 + weight
            norm = model.model.norm.weight
            norm.copy_(torch.where(torch.rand(norm.shape) < 0.5, -1.0, 1.0) - 1.0)
        model.save_pretrained(folder)
    return folder
