"""Recurrent cells written gate by gate, and the layer that runs them over variable-length batches.

`cells` holds the arithmetic (the reference); `recurrent` runs it, explicitly or on PyTorch's fused
kernels over the very same parameters.
"""
from gridcast.nn.cells import CELLS, CellBase, GRUCell, LSTMCell, RNNCell, make_cell
from gridcast.nn.recurrent import GRULayer, LSTMLayer, Recurrent, RecurrentOutput, RNNLayer

__all__ = ["CELLS", "CellBase", "RNNCell", "LSTMCell", "GRUCell", "make_cell",
           "Recurrent", "RecurrentOutput", "RNNLayer", "LSTMLayer", "GRULayer"]
