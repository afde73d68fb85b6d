"""``python -m flyte_iap`` is the ``flyte-iap`` command.

Example::

    $ python -m flyte_iap token --audience 123-web.apps.googleusercontent.com
"""

from flyte_iap._entry import main

main()
