"""`python -m ingestctl` (or the `ingestctl` script)."""

from ingestctl.config import apply_config_file


def main() -> None:
    apply_config_file()
    from ingestctl.cli import app

    app()


if __name__ == "__main__":
    main()
