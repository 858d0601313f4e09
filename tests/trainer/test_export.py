"""mafioso export gguf: the merged GGUF read back matches a torch (peft) merge, the LoRA file matches the adapter,
and the Modelfile renders Mafioso's prompt. All on the tiny random Gemma 3 model, written as a GGUF base here."""

from __future__ import annotations

import json

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from mafioso import prompts
from mafioso.cli import main
from mafioso.core.errors import ConfigError, ModelError
from mafioso.trainer.export import export_lora, export_merged, modelfile, ollama_template, read_lora, without_facts

# HF → llama.cpp names for Gemma 3, written out here (not taken from the gguf package) so the test checks them.
_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
}


def _gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    _, _, layer, module = hf.removesuffix(".weight").split(".", 3)
    return f"blk.{layer}.{_LAYER_NAMES[module]}.weight"


def _as_gguf(state: dict) -> dict:
    """A HF Gemma 3 state dict in llama.cpp's names and values (RMSNorm weights stored as 1 + w)."""
    return {_gguf_name(k): v.float().numpy() + (1.0 if k.endswith("norm.weight") else 0.0)
            for k, v in state.items() if k != "lm_head.weight"}


def _write_base(path, model_dir, arch: str = "gemma3"):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_embedding_length(config.hidden_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    for name, value in _as_gguf(AutoModelForCausalLM.from_pretrained(model_dir).state_dict()).items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory):
    """The tiny model as an F32 gemma3 GGUF: the base an export reads."""
    return _write_base(tmp_path_factory.mktemp("base") / "tiny.gguf", tiny_model_dir)


@pytest.fixture(scope="module")
def torch_merge(tiny_model_dir, tiny_adapter_dir):
    """The reference: peft's own fp32 merge of the tiny adapter, in llama.cpp's names."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_adapter_dir)
    return _as_gguf(model.merge_and_unload().state_dict())


def _tensors(path) -> dict:
    reader = gguf.GGUFReader(path)
    return {t.name: t for t in reader.tensors}, reader


def _values(tensor) -> np.ndarray:
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return data.reshape([int(d) for d in reversed(tensor.shape)])


@pytest.mark.parametrize("qtype, kind, file_type", [("f16", "F16", 1), ("q8_0", "Q8_0", 7)])
def test_merged_matches_the_torch_merge(tiny_gguf, tiny_adapter_dir, torch_merge, tmp_path, qtype, kind, file_type):
    out = export_merged(tiny_adapter_dir, tiny_gguf, tmp_path / f"m-{qtype}.gguf", qtype)
    tensors, reader = _tensors(out)
    base, base_reader = _tensors(tiny_gguf)

    assert list(tensors) == list(base)  # a drop-in: the base's names, in its order
    assert "blk.1.attn_q.weight" in tensors and "token_embd.weight" in tensors
    for name, tensor in tensors.items():
        assert list(tensor.shape) == list(base[name].shape), name
        assert tensor.tensor_type.name == ("F32" if len(tensor.shape) == 1 else kind), name
    assert reader.get_field("general.architecture").contents() == "gemma3"
    assert reader.get_field("general.file_type").contents() == file_type
    for key in ("gemma3.block_count", "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.bos_token_id"):
        assert reader.get_field(key).contents() == base_reader.get_field(key).contents(), key

    adapted = {"blk.0.attn_q.weight", "blk.1.attn_v.weight"}
    tolerance = 2e-3 if qtype == "f16" else 1.5e-2  # F16 rounding; Q8_0 blocks of 32 with one scale each
    for name, expected in torch_merge.items():
        got = _values(tensors[name])
        assert np.allclose(got, expected, atol=tolerance * np.abs(expected).max()), name
    for name in adapted:  # the adapter really moved them, by more than the rounding
        delta = np.abs(torch_merge[name] - _values(base[name])).max()
        assert delta > 10 * tolerance * np.abs(torch_merge[name]).max(), name


def test_lora_only_file_holds_the_adapter(tiny_adapter_dir, tmp_path):
    from safetensors.torch import load_file

    out = export_lora(tiny_adapter_dir, tmp_path / "lora.gguf", "f16")
    tensors, reader = _tensors(out)
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("general.architecture").contents() == "gemma3"
    assert reader.get_field("adapter.type").contents() == "lora"
    assert reader.get_field("adapter.lora.alpha").contents() == pytest.approx(8.0)  # the fixture's r=4, alpha=8

    peft = load_file(str(tiny_adapter_dir / "adapter_model.safetensors"))
    assert len(tensors) == len(peft) == 8
    for layer in (0, 1):
        for hf, short in (("q_proj", "attn_q"), ("v_proj", "attn_v")):
            a = tensors[f"blk.{layer}.{short}.weight.lora_a"]
            b = tensors[f"blk.{layer}.{short}.weight.lora_b"]
            out_features = 64 if short == "attn_q" else 32
            # llama.cpp checks a.ne = [n_in, r] and b.ne = [r, n_out]
            assert list(a.shape) == [64, 4] and list(b.shape) == [4, out_features]
            key = f"base_model.model.model.layers.{layer}.self_attn.{hf}"
            assert np.allclose(_values(a), peft[f"{key}.lora_A.weight"].numpy(), atol=1e-3)
            assert np.allclose(_values(b), peft[f"{key}.lora_B.weight"].numpy(), atol=1e-3)


def test_rslora_alpha_keeps_its_scale(tiny_adapter_dir, tmp_path):
    folder = tmp_path / "rs"
    folder.mkdir()
    config = json.loads((tiny_adapter_dir / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    (folder / "adapter_model.safetensors").write_bytes((tiny_adapter_dir / "adapter_model.safetensors").read_bytes())
    lora = read_lora(folder)
    assert lora.scale == pytest.approx(8 / 4 ** 0.5) and lora.alpha / lora.rank == pytest.approx(lora.scale)


def test_command_writes_gguf_and_modelfile_and_refuses_to_overwrite(tiny_gguf, tiny_adapter_dir, tmp_path, capsys):
    argv = ["export", "gguf", "--adapter", str(tiny_adapter_dir), "--base-model", str(tiny_gguf),
            "--out", str(tmp_path / "dist") + "/", "--type", "q8_0"]
    assert main(argv) == 0
    written = capsys.readouterr().out.split()
    assert written == [str(tmp_path / "dist" / "mafioso-q8_0.gguf"), str(tmp_path / "dist" / "mafioso-q8_0.Modelfile")]
    text = (tmp_path / "dist" / "mafioso-q8_0.Modelfile").read_text()
    assert "FROM ./mafioso-q8_0.gguf" in text and 'PARAMETER stop "###"' in text
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err

    assert main([*argv[:-4], "--out", str(tmp_path / "a.gguf"), "--lora-only"]) == 0
    assert gguf.GGUFReader(tmp_path / "a.gguf").get_field("general.type").contents() == "adapter"


def test_refusals_say_what_is_supported(tiny_model_dir, tiny_adapter_dir, tmp_path):
    import argparse

    from mafioso.trainer import export

    qwen = _write_base(tmp_path / "other.gguf", tiny_model_dir, arch="qwen2")
    with pytest.raises(ModelError, match="Gemma 3"):
        export_merged(tiny_adapter_dir, qwen, tmp_path / "x.gguf")
    with pytest.raises(ModelError, match="not an adapter folder"):
        export_lora(tiny_model_dir, tmp_path / "x.gguf")

    def args(**extra):
        values = {"adapter": str(tiny_adapter_dir), "base_model": "", "out": str(tmp_path / "y.gguf"),
                  "type": "f16", "lora_only": False, "force": False}
        return argparse.Namespace(**{**values, **extra})

    with pytest.raises(ConfigError, match="llama-quantize"):
        export.run(args(type="q4_k_m"))
    with pytest.raises(ModelError, match="GGUF"):  # the tiny adapter's mafioso.json names a HF folder
        export.run(args())
    assert not list(tmp_path.glob("*x.gguf*")) and not list(tmp_path.glob("*y.gguf*"))  # nothing half-written


def test_modelfile_template_renders_mafiosos_prompt():
    template = ollama_template(prompts.render_prompt("MAFIOSO_CODE_SLOT", "MAFIOSO_REQUEST_SLOT"))
    code = "def add(a, b):\n    return a + b"

    def fill(system: str) -> str:  # what Ollama's Go template makes of it, for a template this simple
        request = system or prompts.DEFAULT_REQUEST
        return template.replace("{{ .Prompt }}", code).replace(
            f"{{{{ if .System }}}}{{{{ .System }}}}{{{{ else }}}}{prompts.DEFAULT_REQUEST}{{{{ end }}}}", request)

    assert fill("") == without_facts(prompts.render_prompt(code))
    assert fill("why?") == without_facts(prompts.render_prompt(code, "why?"))
    assert f'TEMPLATE """{template}"""' in modelfile("m.gguf")


def test_facts_section_is_left_out_of_the_template():
    rendered = "### INSTRUCTION:\nbe brief\n\n### CODE:\nx = 1\n\n### FACTS:\n- assigns x\n- no calls\n\n### RESPONSE:\n"
    assert without_facts(rendered) == "### INSTRUCTION:\nbe brief\n\n### CODE:\nx = 1\n\n### RESPONSE:\n"
