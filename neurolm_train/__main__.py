"""``python -m neurolm_train ...`` = ``neurolm-train ...``; the form ``torchrun`` needs:

torchrun --nproc_per_node 2 -m neurolm_train vq --shards OUT/shards --out runs/vq --steps 100
"""

from cli import train_app

train_app()
