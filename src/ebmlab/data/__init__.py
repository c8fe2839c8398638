"""Built-in data sets, all generated in code (nothing is downloaded)."""

__all__: list[str] = []
