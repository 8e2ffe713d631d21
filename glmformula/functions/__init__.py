"""The built-in term functions, one module per family.

Each module declares the functions' signatures (checked at parse time) and how each builds its
columns in the feature graph. Importing this package registers them all.
"""

from . import basis, temporal, transforms  # noqa: F401  (registration on import)
