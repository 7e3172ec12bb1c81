"""The audio front end chosen by `config.audio`: 16-kHz mono samples -> per-video-frame features [T, L, C].

- `logmel` (default, no weights): `jaxmoda.moda.audio.audio_features`, [T, 2, 83].
- `hubert`: the hidden states 1..L of a HuBERT / wav2vec2-base encoder (MoDA uses chinese-hubert-base,
  [T, 12, 768]) loaded from `config.audio.hubert_weights`, a Hugging Face weights file (.safetensors
  or pytorch_model.bin) with its config.json beside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from jaxmoda.errors import ConfigError


def hubert_shape(audio_cfg) -> tuple[int, int]:
    """(layers, channels) of the HuBERT features: from the weights' config.json, else HuBERT-base's."""
    from jaxmoda.convert.hubert import read_config
    path = audio_cfg.get("hubert_weights", "")
    cfg = read_config(path) if path else None
    return (cfg.num_hidden_layers, cfg.hidden_size) if cfg else (12, 768)


def make_frontend(audio_cfg) -> Callable[[np.ndarray], np.ndarray]:
    from jaxmoda.moda import audio
    if audio_cfg.frontend != "hubert":
        settings = audio.AudioSettings.from_config(audio_cfg)
        return lambda wave16k: audio.audio_features(wave16k, settings)
    path = audio_cfg.get("hubert_weights", "")
    if not path or not os.path.isfile(path):
        raise ConfigError(f"config.audio.frontend='hubert' needs config.audio.hubert_weights, a Hugging Face HuBERT "
                          f"weights file (got {path!r}); or use frontend='logmel'")
    from jaxmoda.convert.hubert import load_model
    from jaxmoda.moda.hubert import hubert_features
    model = load_model(path)
    return lambda wave16k: hubert_features(model, np.asarray(wave16k, np.float32), include_embedding=False)
