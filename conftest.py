"""Repository-wide test set-up.

Tests run on small tensors, where torch's intra-op threads cost more in hand-offs than they save
(the suite itself runs in parallel processes), so every test process uses one thread.
"""

import torch

torch.set_num_threads(1)
