"""Jobs: recording and publishing them, and reading their state; what the API and relay share."""
