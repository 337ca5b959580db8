"""The database: the SQLAlchemy extension, the models, and their Alembic migrations.

Models know nothing of jobs, tasks or HTTP; everything else reads and writes rows through them.
"""
