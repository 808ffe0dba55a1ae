"""Tied weights stay tied in a saved checkpoint even when the state dict's tensors were cloned (DeepSpeed ZeRO-2)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from trl_policysplit.saving import retie_shared_weights, shared_parameter_names


def tiny_tied_model() -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    return Qwen2ForCausalLM(config)


def cloned_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What accelerate's get_state_dict gives under ZeRO-1/2: every tensor a separate copy."""
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_the_tie_is_found_by_parameter_identity():
    assert shared_parameter_names(tiny_tied_model()) == [["model.embed_tokens.weight", "lm_head.weight"]]


def test_a_cloned_state_dict_is_saved_with_an_extra_head_unless_retied(tmp_path):
    model = tiny_tied_model()
    model.save_pretrained(tmp_path / "cloned", state_dict=cloned_state_dict(model))
    assert "lm_head.weight" in load_file(tmp_path / "cloned" / "model.safetensors")  # the bug, as transformers does it

    retied = retie_shared_weights(cloned_state_dict(model), model)
    assert retied["lm_head.weight"] is retied["model.embed_tokens.weight"]
    model.save_pretrained(tmp_path / "retied", state_dict=retied)
    saved = load_file(tmp_path / "retied" / "model.safetensors")
    untied = set(load_file(tmp_path / "cloned" / "model.safetensors"))
    assert "lm_head.weight" not in saved and set(saved) == untied - {"lm_head.weight"}
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "retied")
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_entries_that_differ_are_left_as_they_are():
    model = tiny_tied_model()
    state = cloned_state_dict(model)
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0  # not the model's tie any more
    retied = retie_shared_weights(state, model)
    assert retied["lm_head.weight"] is state["lm_head.weight"]
    partial = retie_shared_weights({"model.embed_tokens.weight": state["model.embed_tokens.weight"]}, model)
    assert list(partial) == ["model.embed_tokens.weight"]  # a missing entry is not invented
