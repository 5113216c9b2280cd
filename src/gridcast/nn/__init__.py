"""Recurrent cells written gate by gate, and the layer that runs them over variable-length batches.

`cells` holds the arithmetic (the reference, with the table "where the gates live"); `kernels` runs
it over whole sequences with a hand-written backward; `recurrent` stacks layers and picks the path
(explicit, or PyTorch's fused kernels over the very same parameters).
"""
from gridcast.nn.cells import CELLS, CellBase, GRUCell, LSTMCell, RNNCell, make_cell
from gridcast.nn.kernels import GRULayer, LSTMLayer, RNNLayer
from gridcast.nn.recurrent import Recurrent, RecurrentOutput

__all__ = ["CELLS", "CellBase", "RNNCell", "LSTMCell", "GRUCell", "make_cell",
           "Recurrent", "RecurrentOutput", "RNNLayer", "LSTMLayer", "GRULayer"]
