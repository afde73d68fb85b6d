"""Local stand-ins for Google, IAP, flyteadmin and the Flyte 2 control plane, for tests, the
documentation and your own CI.

Example::

    import os

    from flyte_iap.testing import FakeGoogle

    with FakeGoogle() as google:
        os.environ.update(google.env)  # point flyte-iap and google-auth at the fake
        ...

From a shell, ``python -m flyte_iap.testing serve`` starts the fakes and prints the ``export`` lines to
paste. Everything listens on 127.0.0.1 only. Core flyte-iap code never imports this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FakeGoogle": "flyte_iap.testing.fake_google",
    "IapProxy": "flyte_iap.testing.iap_proxy",
    "FakeFlyteAdmin": "flyte_iap.testing.fake_flyteadmin",
    "FakeFlyte2": "flyte_iap.testing.fake_flyte2",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flyte_iap.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
