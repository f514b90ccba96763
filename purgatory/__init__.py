"""Events waiting for their git data, and the service that fetches that data."""
