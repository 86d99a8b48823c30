"""Alembic migrations, shipped inside the package so an installed optiinfra can migrate from any directory."""
