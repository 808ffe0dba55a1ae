"""Saving a model with the structure it has: tied weights stay tied in the checkpoint.

transformers drops the duplicates of tied weights (e.g. ``lm_head.weight`` tied to the input embeddings) from a
state dict by finding tensors that share storage. Accelerate's state dict under DeepSpeed ZeRO-1/2 clones every
tensor (``clone_tensors_for_torch_save``), so that sharing is lost and the checkpoint gets an untied copy: a larger
file, and a model that loads with ``tie_word_embeddings=True`` but a separate head on disk.
"""

from __future__ import annotations

from typing import Any

import torch


def shared_parameter_names(model: torch.nn.Module) -> list[list[str]]:
    """Names of the parameters that are one and the same object in ``model`` (tied weights), one list per tie.

    Parameter identity, not storage, is what ties mean here: under ZeRO-3 every parameter's local storage is an
    empty placeholder, so storage pointers would match parameters that are not tied.
    """
    names_by_parameter: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names_by_parameter.setdefault(id(parameter), []).append(name)
    return [names for names in names_by_parameter.values() if len(names) > 1]


def retie_shared_weights(state_dict: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """``state_dict`` with the entries of each tied parameter pointing to one tensor again (a new dict).

    Only entries present, equal in shape and in value are re-tied, so a state dict that really holds different
    values (it then does not come from ``model``) is saved as it is.
    """
    retied = dict(state_dict)
    for names in shared_parameter_names(model):
        present = [name for name in names if isinstance(retied.get(name), torch.Tensor)]
        if len(present) < 2:
            continue
        first = retied[present[0]]
        for name in present[1:]:
            tensor = retied[name]
            if tensor.shape == first.shape and tensor.dtype == first.dtype and torch.equal(tensor, first):
                retied[name] = first
    return retied
