"""The data-transformer agent: DuckDB SQL over staged Parquet, sandboxed (see sandbox.py)."""
