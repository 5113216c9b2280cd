"""Continuous forecasting: the next positions in metres or pixels (ETH/UCY pedestrians, mouse cursors)."""
from gridcast.continuous.model import *  # noqa: F401,F403  (split into modules later in this refactor)
