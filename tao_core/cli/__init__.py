"""The ``tao`` command line."""
