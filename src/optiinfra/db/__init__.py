"""Database access: engine and sessions, the embedded PostgreSQL, migrations and demo data."""
