"""gridcast: learn where a moving thing goes next, on a grid, at a fixed time step.

The recurrent cells are written gate by gate (`gridcast.nn.cells`) and proven equal to PyTorch's own
modules; `gridcast.nn.recurrent.Recurrent` runs them over variable-length batches, with a fused path
on the very same parameters for speed. docs/architecture.md maps the subpackages.

`Grid` is imported on first use, so that ``import gridcast`` (and `gridcast --help`) stays free of numpy.
"""
from gridcast.errors import CheckpointError, GridcastError, InputError

__version__ = "0.1.0"

__all__ = ["Grid", "GridcastError", "InputError", "CheckpointError", "__version__"]


def __getattr__(name: str):
    if name == "Grid":
        from gridcast.grid import Grid

        return Grid
    raise AttributeError(f"module 'gridcast' has no attribute {name!r}")
