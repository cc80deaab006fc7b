"""Type aliases shared across the engine."""

import numpy as np
from numpy.typing import NDArray

# Mono float32 samples in [-1, 1].
Audio = NDArray[np.float32]
