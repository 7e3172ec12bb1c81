"""D²iT-L on FFHQ-256 (unconditional), on the latents of configs/d2it/dvae_256.py:ffhq.

python -m jaxmoda.train --config configs/d2it/ffhq256_l.py --workdir /mnt/gcs/BUCKET/d2it_ffhq_l \\
    --config.dvae_workdir=/mnt/gcs/BUCKET/dvae_ffhq --config.latents=/mnt/gcs/BUCKET/latents_ffhq
"""

from configs.d2it.paper import paper_config


def get_config():
    return paper_config("l", num_classes=1)
