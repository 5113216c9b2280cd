"""gridcast: learn where a moving thing goes next, on a grid, at a fixed time step.

The recurrent cells are written gate by gate (`gridcast.cells`) and proven equal to PyTorch's own
modules; `gridcast.recurrent.Recurrent` runs them over variable-length batches, with a fused path on
the very same parameters for speed.
"""
from gridcast.errors import CheckpointError, GridcastError, InputError
from gridcast.grid import Grid

__version__ = "0.1.0"

__all__ = ["Grid", "GridcastError", "InputError", "CheckpointError", "__version__"]
