"""D²iT-B on FFHQ-256 (unconditional), on the latents of configs/d2it/dvae_256.py:ffhq.

python -m jaxmoda.train --config configs/d2it/ffhq256_b.py --workdir /mnt/gcs/BUCKET/d2it_ffhq_b \\
    --config.dvae_workdir=/mnt/gcs/BUCKET/dvae_ffhq --config.latents=/mnt/gcs/BUCKET/latents_ffhq
"""

from configs.d2it.paper import paper_config


def get_config():
    return paper_config("b", num_classes=1)
