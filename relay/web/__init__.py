"""What a browser sees: HTML pages."""
