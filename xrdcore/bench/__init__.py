"""The benchmark harness behind ``xrdcore bench`` and its reports."""
