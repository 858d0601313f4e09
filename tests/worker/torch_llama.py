"""A stand-in for ``llama_cpp.Llama`` over a transformers model, for the llama.cpp engine's token-exact tests."""

from __future__ import annotations


class TorchLlama:
    """Stands in for ``llama_cpp.Llama`` (the part worker/llamacpp_engine.py uses) over a transformers model:
    ``generate`` yields tokens, each from a full forward pass whose last logits go through the given logits
    processors first, as llama.cpp's sampler chain does (temp 0: the processors, then argmax; else a draw at
    that temperature from a numpy generator seeded by ``set_seed``: the stand-in ignores the nucleus)."""

    def __init__(self, model, n_ctx: int = 512, **_ignored):
        self.model = model
        self._n_ctx = n_ctx
        self.closed = False
        self.calls: list[dict] = []  # the sampling settings of each generate call
        self.seeds: list[int] = []  # each set_seed

    def n_ctx(self) -> int:
        return self._n_ctx

    def n_vocab(self) -> int:
        return self.model.config.get_text_config().vocab_size

    def close(self) -> None:
        self.closed = True

    def set_seed(self, seed: int) -> None:
        self.seeds.append(seed)

    def generate(self, tokens, *, logits_processor=None, temp: float = 0.8, **settings):
        import numpy as np
        import torch

        self.calls.append({"temp": temp, **settings})
        draws = np.random.default_rng(self.seeds[-1] if self.seeds else None)
        ids = list(tokens)
        while len(ids) < self._n_ctx:
            with torch.no_grad():
                scores = self.model(torch.tensor([ids])).logits[0, -1].float().numpy().copy()
            for process in logits_processor or ():  # None: none, as llama.cpp takes it
                scores = process(np.array(ids, dtype=np.intc), scores)
            if temp == 0.0:
                ids.append(int(np.argmax(scores)))
            else:
                probs = np.exp((scores - scores.max()) / temp)
                ids.append(int(draws.choice(len(probs), p=probs / probs.sum())))
            yield ids[-1]
