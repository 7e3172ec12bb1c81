"""MoDA-B (configs/moda/hdtf_b.py) trained on records written from your videos by
python -m jaxmoda.data.videos (motion from your renderer's motion extractor, audio at 16 kHz).

python -m jaxmoda.data.videos --in VIDEOS --out RECORDS --motion-extractor runs/renderer_256
python -m jaxmoda.train --config configs/moda/records_b.py:RECORDS --workdir /mnt/gcs/BUCKET/moda_b \\
    --config.audio.hubert_weights=chinese-hubert-base/pytorch_model.bin
Without HuBERT weights, add --config.audio.frontend=logmel. The motion statistics come from
RECORDS/motion_stats.json; audio features are computed once and cached beside the records.
"""

from configs.moda import hdtf_b


def get_config(records=""):
    c = hdtf_b.get_config()
    c.data_dir = records
    return c
