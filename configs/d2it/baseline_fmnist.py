"""Fixed-grain DiT baselines of configs/d2it/fmnist.py on the same Fashion-MNIST Dynamic VAE (every
region fine, or every region coarse; no DGT, no RefineNet), for FID comparisons at equal steps.

python -m jaxmoda.train --config configs/d2it/baseline_fmnist.py:fine --workdir runs/fmnist_fine \\
    --config.dvae_workdir=runs/dvae_fmnist
"""

from configs.d2it import fmnist
from configs.d2it.common_d2it import fixed_grain_baseline


def get_config(arg="fine"):
    return fixed_grain_baseline(fmnist.get_config(), arg, "configs/d2it/baseline_fmnist.py")
