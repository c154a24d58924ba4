"""data-converter: recognises file formats and converts files to Parquet (port 8103)."""
