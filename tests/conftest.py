import os

import torch

# Same numbers on every machine: one thread pool size, deterministic algorithms where cheap.
torch.set_num_threads(min(2, os.cpu_count() or 1))
