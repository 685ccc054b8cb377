"""Collection policy for the whole tree (fixtures live in tests/conftest.py).

pytest imports every module of backend/, scoring/, core/ and fakellm/ to run its doctests
(``--doctest-modules`` in pyproject.toml).  Modules that *do* something when imported are not
collected: the ``__main__`` modules (``python -m ...`` entry points) and ``backend/wsgi.py``
(builds the app from the environment for gunicorn).  tests/test_packaging.py checks that every
other module imports without side effects and that each module with examples has them collected.
"""

collect_ignore = ["backend/wsgi.py"]
collect_ignore_glob = ["*/__main__.py", "__main__.py"]
