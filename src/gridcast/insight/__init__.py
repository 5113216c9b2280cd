"""Measurements that show why RNN, LSTM and GRU behave differently: gates, gradients, memory, ablations."""
