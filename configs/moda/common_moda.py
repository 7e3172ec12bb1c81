"""Shared pieces of the MoDA motion-generator configs."""

import ml_collections

from configs.common import get_common
from jaxmoda.flow import default_objective_config


def motion_model(**overrides):
    """The multi-modal DiT; the paper's (TalkingHeadDiT-B) sizes by default: 373M parameters."""
    m = ml_collections.ConfigDict({
        "name": "moda",
        "hidden": 768, "num_heads": 12, "mlp_ratio": 4.0,
        "four_stream_depth": 3,    # stage 1: motion | audio | emotion | identity, separate weights
        "two_stream_depth": 6,     # stage 2: motion | condition (audio + emotion + identity)
        "single_depth": 12,        # stage 3: one shared stream
        "rope_base": 256.0,
        "window": 80,              # frames per window (3.2 s at 25 fps)
        "num_emotions": 8,         # label 8 = null
        "attention": "xla", "remat": "none", "dtype": "float32", "param_dtype": "float32",
    })
    m.update(overrides)
    return m


def moda_group(**overrides):
    g = ml_collections.ConfigDict({
        "audio_drop": 0.2, "emotion_drop": 0.1, "prefix_drop": 0.0,   # condition dropout (MoDA's)
        "cfg_audio": 1.2, "cfg_emotion": 1.0,                          # nested guidance scales
        "loss": ml_collections.ConfigDict({
            "groups": ("exp", "pose", "lip"),
            "exp_weight": 1.0, "pose_weight": 1.0, "lip_weight": 1.0,
            "velocity": 1.0,     # frame-difference matching on x0_hat
            "smooth": 0.5,       # acceleration matching on x0_hat
        }),
        "synthtalk_clips": 0,      # clips to generate when config.data_dir is empty (0: no generation)
        "synthtalk_seed": 0,
        "eval_clips": 32,
        # Filled from the data on first use and saved in config.json (generation needs no data):
        "motion_mean": [], "motion_std": [], "default_identity": [],
        "emotions": ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted", "contempt"),
    })
    g.update(overrides)
    return g


def moda_config(model, **top):
    from jaxmoda.moda.audio import default_audio_config
    c = get_common()
    c.model = model
    c.audio = default_audio_config()
    c.objective = default_objective_config()
    c.objective.time_sampler = "uniform"       # MoDA: sigma ~ U(0, 1), no shift
    c.objective.sample_steps = 10
    c.objective.sampler = "euler"
    c.data_dir = ""                            # SynthTalk / records folder; empty = generate and cache
    c.moda = moda_group()
    c.num_samples = 0                          # windows are judged by python -m jaxmoda.eval_motion
    c.update(top)
    return c
