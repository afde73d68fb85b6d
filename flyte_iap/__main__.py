"""``python -m flyte_iap`` is the ``flyte-iap`` command."""

from flyte_iap._entry import main

main()
