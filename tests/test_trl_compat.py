"""The TRL private members the trainers rely on: pinned here, checked at import with one clear error."""

from __future__ import annotations

import inspect

import pytest
from packaging.version import Version
from trl import GRPOTrainer

from trl_policysplit import _trl


def test_the_installed_trl_is_in_the_declared_range_and_matches_every_member() -> None:
    import trl

    assert Version(trl.__version__) in _trl.SUPPORTED_TRL
    assert _trl.surface_problems() == []


@pytest.mark.parametrize("path", sorted(_trl.PRIVATE_SURFACE))
def test_every_private_member_has_the_pinned_leading_parameters(path: str) -> None:
    names = list(inspect.signature(_trl._resolve(path)).parameters)
    assert names[: len(_trl.PRIVATE_SURFACE[path])] == list(_trl.PRIVATE_SURFACE[path])


def test_every_overridden_trl_hook_is_in_the_surface() -> None:
    """Each private GRPOTrainer/Trainer method a trainer here overrides is listed, so a rename cannot slip by."""
    from trl_policysplit import AdvantageShapingTrainer, PolicySplitTrainer

    listed = {path.rsplit(".", 1)[1] for path in _trl.PRIVATE_SURFACE}
    for trainer in (AdvantageShapingTrainer, PolicySplitTrainer):
        for name, member in vars(trainer).items():
            if name.startswith("_") and not name.startswith("__") and callable(member) and hasattr(GRPOTrainer, name):
                assert name in listed, f"{trainer.__name__}.{name} overrides a TRL private not in _trl.PRIVATE_SURFACE"


def test_a_changed_hook_is_one_line_naming_trl_the_member_and_the_range(monkeypatch) -> None:
    # TRL's main branch already takes 3 arguments here instead of 5.
    def three_arguments(self, prompt_ids, images):
        raise AssertionError("never called")

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", three_arguments)
    with pytest.raises(ImportError) as raised:
        _trl.check_private_surface()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("trl 1.16.0 changed trl.trainer.grpo_trainer.GRPOTrainer._generate_single_turn")
    assert (
        "takes (self, prompt_ids, images) where the package passes (self, prompt_ids, images, multimodal_fields"
        in (message)
    )
    assert message.endswith("supports trl>=1.16.0,<1.17 (tested with 1.16.0): pip install 'trl>=1.16.0,<1.17'.")


def test_a_removed_member_and_a_new_required_argument_are_reported(monkeypatch) -> None:
    monkeypatch.delattr(GRPOTrainer, "_tokenize_prompts")

    def compute_loss(self, model, inputs, step):
        raise AssertionError("never called")

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", compute_loss)
    problems = _trl.surface_problems()
    assert "trl.trainer.grpo_trainer.GRPOTrainer._tokenize_prompts: it no longer exists" in problems
    assert "trl.trainer.grpo_trainer.GRPOTrainer._compute_loss: it requires (step) that the package does not pass" in (
        problems
    )
    with pytest.raises(ImportError, match=r"\(and 1 more\)"):
        _trl.check_private_surface()


def test_a_trl_outside_the_range_warns_when_its_members_still_match(monkeypatch) -> None:
    monkeypatch.setattr(_trl, "version", lambda name: "1.17.0")
    with pytest.warns(UserWarning, match=r"trl 1\.17\.0 is outside the tested range"):
        _trl.check_private_surface()


def test_missing_instance_attributes_are_one_line() -> None:
    class Bare:
        _metrics = {}

    with pytest.raises(ImportError, match=r"no longer sets _logs, _tokenizer; trl-policysplit supports"):
        _trl.check_instance(Bare())


def test_setup_cfg_declares_the_checked_range() -> None:
    import configparser
    from pathlib import Path

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    requirements = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    assert f"trl{_trl.SUPPORTED_TRL_RANGE}" in requirements
    assert _trl.TESTED_TRL in _trl.SUPPORTED_TRL


def test_only_the_listed_trl_attributes_can_be_swapped_and_they_come_back() -> None:
    from trl.trainer import grpo_trainer

    original = grpo_trainer.VLLMGeneration
    with _trl.swapped("trl.trainer.grpo_trainer.VLLMGeneration", object):
        assert grpo_trainer.VLLMGeneration is object
    assert grpo_trainer.VLLMGeneration is original
    with pytest.raises(ValueError, match="not one of the TRL attributes"):
        with _trl.swapped("trl.trainer.grpo_trainer.GRPOTrainer", object):
            pass


def test_no_module_but_the_compat_module_touches_a_private_it_does_not_define() -> None:
    """Every ``x._name`` in the package is either the package's own (defined somewhere in it) or a TRL hook listed in
    the pinned surface; any other private (TRL's, transformers', argparse's) goes through `_trl.py`."""
    import ast
    from pathlib import Path

    import trl_policysplit

    root = Path(trl_policysplit.__file__).parent
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in root.rglob("*.py")}
    own: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
    pinned = {path.rsplit(".", 1)[1] for path in (*_trl.PRIVATE_SURFACE, *_trl.PRIVATE_ATTRIBUTES)}
    found = [
        f"{path.relative_to(root)}:{node.lineno} .{node.attr}"
        for path, tree in trees.items()
        if path.name != "_trl.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and node.attr not in own | pinned
    ]
    assert found == []
    # It would see one: the compat module reads TRL's metric store, a name the package neither defines nor pins.
    compat = trees[root / "_trl.py"]
    assert any(isinstance(node, ast.Attribute) and node.attr == "_metrics" for node in ast.walk(compat))
    assert "_metrics" not in own | pinned
