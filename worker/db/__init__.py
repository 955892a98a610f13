"""PostgreSQL: models, engine, repositories and the Unit of Work."""
