"""The 256-px renderer (configs/moda/renderer_256.py) trained on your videos' face crops: records from
python -m jaxmoda.data.videos, one clip = one identity, 16 frames spread over each clip; the motion
extractor is supervised by the motion stored in the records (that of the extractor that wrote them).

python -m jaxmoda.train --config configs/moda/renderer_records_256.py:RECORDS --workdir /mnt/gcs/BUCKET/renderer_real \\
    --config.render.train_identities=N --config.render.eval_identities=M
"""

from configs.moda import renderer_256


def get_config(records=""):
    c = renderer_256.get_config()
    c.render.records = records
    c.render.train_identities = 4000
    c.render.eval_identities = 128
    return c
