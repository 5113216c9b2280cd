"""The four shared benchmark datasets by name, for the benchmark scripts beside this file.

``DATA`` (environment) is the shared data folder; Liverpool is bundled with the package."""
import os

DATA = os.environ.get("DATA", "data")


def load(name: str, mode: str):
    """(train, test, ...) as the dataset's own loader returns it, in `mode` ('fixed' or 'collapsed')."""
    if name == "geolife":
        from gridcast.datasets.geolife import load_geolife
        return load_geolife(f"{DATA}/geolife_skmob", mode=mode)
    if name == "fishers":
        from gridcast.datasets.fishers import load_fishers
        return load_fishers(f"{DATA}/movebank_fishers", mode=mode)
    if name == "uci":
        from gridcast.datasets.uci import load_uci
        return load_uci(f"{DATA}/uci_gps_trajectories", mode=mode)
    from gridcast.datasets.liverpool import load_liverpool_commute
    return load_liverpool_commute(mode)


def fit_lstm(data, seed: int, **settings):
    """One LSTM at `gridcast fit`'s defaults (model `settings` override them) on the benchmark's
    early-stopping split, as `gridcast bench` fits its models."""
    import torch

    from gridcast.bench.commute import early_stopping_split
    from gridcast.nextcell.forecaster import Forecaster

    train, val = early_stopping_split(data)
    torch.manual_seed(seed)
    return Forecaster(grid=data.grid, cell="lstm", **settings).fit(train, val_tracks=val, seed=seed)
