"""D²iT-XL on ImageNet-256 (1000 classes, CFG), on the latents of configs/d2it/dvae_256.py:imagenet.

python -m jaxmoda.train --config configs/d2it/imagenet256_xl.py --workdir /mnt/gcs/BUCKET/d2it_xl \
    --config.dvae_workdir=/mnt/gcs/BUCKET/dvae_imagenet --config.latents=/mnt/gcs/BUCKET/latents_imagenet
"""

from configs.d2it.paper import paper_config


def get_config():
    return paper_config("xl", num_classes=1000)
