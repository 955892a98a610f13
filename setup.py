"""Packaging that pyproject.toml cannot say: the Alembic migrations ride inside the package.

`alembic/` stays at the top of the repository, where `alembic revision` writes; a wheel
carries it as `worker/db/migration_scripts`, so an installed worker migrates from any
directory (`worker.db.migrations.script_location`). Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

MIGRATIONS = "worker.db.migration_scripts"

setup(
    packages=[*find_packages(include=["worker", "worker.*"]), MIGRATIONS, f"{MIGRATIONS}.versions"],
    package_dir={MIGRATIONS: "alembic"},
    package_data={MIGRATIONS: ["script.py.mako"]},
)
