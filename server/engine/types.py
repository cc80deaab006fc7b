"""Type aliases and constants shared across the engine and the worker."""

import numpy as np
from numpy.typing import NDArray

# Mono float32 samples in [-1, 1].
Audio = NDArray[np.float32]

# S3Gen's output rate (upstream S3GEN_SR): every sample the engine makes or takes in is at it.
SAMPLE_RATE = 24000
