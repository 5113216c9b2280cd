"""The HTTP service: `gridcast serve` puts fitted next-cell models behind a small JSON API.

* `app`: the FastAPI application factory (`create_app`), one route per endpoint of docs/contracts.md;
* `schemas`: request bodies and their documented limits (`limits`);
* `registry`: the served models, loaded through `Forecaster.load` (its checks included);
* `sessions`: live tracks, one streaming predictor per model (O(1) per point), LRU + idle expiry;
* `state`: live track states on disk (atomic, periodic and at shutdown) for restarts;
* `auth`: the Bearer token; `metrics`: Prometheus text; `server`: the uvicorn run and its safety checks.
"""
from gridcast.serve.app import create_app
from gridcast.serve.limits import Limits
from gridcast.serve.registry import ServedModel, load_models
from gridcast.serve.server import check_bind, read_token, serve

__all__ = ["create_app", "Limits", "ServedModel", "load_models", "check_bind", "read_token", "serve"]
