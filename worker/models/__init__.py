"""The model math of each architecture the fast decode path serves, chosen by the config's ``model_type``.

To add an architecture: a module beside ``gemma3.py`` with ``supports(cfg)`` and a class that implements
:class:`~mafioso.worker.models.common.DecoderModel`, one line in ``ARCHITECTURES``, and token-exact tests against
``generate`` on a tiny random model (tests/worker/).
"""

from __future__ import annotations

from mafioso.worker.models import gemma3, qwen2
from mafioso.worker.models.common import DecoderModel, Layer

#: model_type -> (whether the maths covers a config, the maths' class)
ARCHITECTURES = {
    gemma3.MODEL_TYPE: (gemma3.supports, gemma3.Gemma3),
    qwen2.MODEL_TYPE: (qwen2.supports, qwen2.Qwen2),
}

__all__ = ["ARCHITECTURES", "DecoderModel", "Layer", "decoder_model", "supports"]


def supports(model) -> bool:
    """Whether the fast decode path has the maths of this transformers model."""
    cfg = model.config.get_text_config()
    found = ARCHITECTURES.get(getattr(cfg, "model_type", ""))
    return found is not None and found[0](cfg)


def decoder_model(model) -> DecoderModel:
    """The model math for this (merged, unquantized) transformers model; ValueError naming what is served if
    there is none."""
    cfg = model.config.get_text_config()
    model_type = getattr(cfg, "model_type", "")
    if model_type not in ARCHITECTURES:
        raise ValueError(f"the fast decode path serves {', '.join(sorted(ARCHITECTURES))} models, "
                         f"not {model_type or 'this model'}")
    return ARCHITECTURES[model_type][1](model)
